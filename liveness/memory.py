"""Give a run's large arrays back to the system when they are freed, so its peak stays low.

A run at a million persons allocates and frees arrays of tens of megabytes stage after stage.
glibc's malloc serves blocks above its mmap threshold by `mmap` and unmaps them when freed, but
it raises that threshold after each such free (up to 32 MB on 64 bits), after which blocks of
that size come from the heap and stay with the process once freed, fragmented; Arrow's default
pool (mimalloc) keeps what it freed too. Measured on the nightly run of a million persons
(bench/README.md), the process held about 2.0 GB at its peak, of which under 0.8 GB was live
Python and NumPy memory; with a fixed threshold and Arrow on the system allocator it peaks
about 0.4 GB lower, in the same time.

The evidence stage is the exception (`reused_blocks`): it frees and allocates arrays of a
batch of traces hundreds of times, and each fresh mapping is paid again in page faults.
Reusing them from the heap there and trimming it after made the night about a second faster
for 0.1 GB more at its peak (bench/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pyarrow as pa

# glibc's mallopt(3) parameter: the size from which a block is mapped on its own. Setting it
# also stops the adjustment that raises it after frees.
M_MMAP_THRESHOLD = -3
# A megabyte: a run's columns (a million persons) are far larger; small objects stay pooled.
MMAP_THRESHOLD_BYTES = 1 << 20
# Inside `reused_blocks`: the largest threshold glibc itself would move to (64 bits).
POOLED_BYTES = 32 << 20


@cache
def _libc() -> ctypes.CDLL | None:
    """Return glibc's functions, or None on another C library or system."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None  # not glibc: its allocator has its own policy
    return libc


@cache
def return_large_blocks() -> bool:
    """Have large blocks unmapped when freed (glibc) and Arrow allocate from the same malloc.

    Returns whether glibc's threshold could be set (not on another C library or system).
    Once per process: both are process-wide.
    """
    pa.set_memory_pool(pa.system_memory_pool())
    libc = _libc()
    return libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


@contextmanager
def reused_blocks() -> Iterator[None]:
    """Let blocks up to POOLED_BYTES be reused from the heap inside, then give the heap back.

    The evidence stage allocates and frees arrays of a batch of traces (4 to 32 MB) hundreds
    of times: each a fresh mapping, whose pages the kernel zeroes on first touch, when large
    blocks are unmapped. Inside, they are kept and reused; at the end, the heap's free pages
    go back to the system (`malloc_trim`) and large blocks are mapped on their own again, so
    the stages after it (the run's peak) are not held up by them. The freed chunks stay in the
    heap, without their pages, and a later block that fits one is served from it (about 0.1
    GB more at the night's peak, bench/README.md). Only after `return_large_blocks`.
    """
    libc = _libc() if return_large_blocks.cache_info().currsize else None
    if libc is None or not libc.mallopt(M_MMAP_THRESHOLD, POOLED_BYTES):
        yield
        return
    try:
        yield
    finally:
        libc.malloc_trim(0)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
