"""Entry points: the command line, the scheduler and its nightly job, the demo.

They may import the domain core and `api`; nothing in the core imports them (tests/test_layers.py).
"""
