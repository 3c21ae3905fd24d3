"""Give a run's large arrays back to the system when they are freed, so its peak stays low.

A run at a million persons allocates and frees arrays of tens of megabytes stage after stage.
glibc's malloc serves blocks above its mmap threshold by `mmap` and unmaps them when freed, but
it raises that threshold after each such free (up to 32 MB on 64 bits), after which blocks of
that size come from the heap and stay with the process once freed, fragmented; Arrow's default
pool (mimalloc) keeps what it freed too. Measured on the nightly run of a million persons
(bench/README.md), the process held about 2.0 GB at its peak, of which under 0.8 GB was live
Python and NumPy memory; with a fixed threshold and Arrow on the system allocator it peaks
about 0.4 GB lower, in the same time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

import pyarrow as pa

# glibc's mallopt(3) parameter: the size from which a block is mapped on its own. Setting it
# also stops the adjustment that raises it after frees.
M_MMAP_THRESHOLD = -3
# A megabyte: a run's columns (a million persons) are far larger; small objects stay pooled.
MMAP_THRESHOLD_BYTES = 1 << 20


@cache
def return_large_blocks() -> bool:
    """Have large blocks unmapped when freed (glibc) and Arrow allocate from the same malloc.

    Returns whether glibc's threshold could be set (not on another C library or system).
    Once per process: both are process-wide.
    """
    pa.set_memory_pool(pa.system_memory_pool())
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc: its allocator has its own policy
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
