"""Benchmark of a whole `liveness run` on a simulated city."""
