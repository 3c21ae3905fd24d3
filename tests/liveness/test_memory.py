"""A run gives its large arrays back to the system: glibc's threshold fixed, Arrow on malloc."""

from __future__ import annotations

import platform
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from liveness.memory import return_large_blocks


def test_large_blocks_are_returned_and_arrow_allocates_from_malloc() -> None:
    set_threshold = return_large_blocks()
    assert pa.default_memory_pool().backend_name == "system"
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert set_threshold
    # Arrays still allocate and free as before (a block far above the threshold, then many
    # below it).
    big = np.ones(4 << 20)
    assert float(big.sum()) == 4 << 20
    del big
    assert sum(len(np.zeros(1000)) for _ in range(1000)) == 1_000_000
    assert pa.array(range(100_000)).sum().as_py() == 4_999_950_000


# Run in a fresh interpreter: a large request is served from a free chunk of the heap, whatever
# the threshold, when one fits, and earlier tests of a process leave such chunks behind.
_REUSE_CHECK = """
import ctypes, ctypes.util, sys
import numpy as np
from liveness.memory import return_large_blocks, reused_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

name = ctypes.util.find_library("c")
mallinfo2 = getattr(ctypes.CDLL(name), "mallinfo2", None) if name else None
if mallinfo2 is None or not return_large_blocks():
    print("skip")
    sys.exit()
mallinfo2.restype = MallInfo2

def mapped_for_a_block():
    before = mallinfo2().hblkhd
    block = np.ones(512 * 1024)  # 4 MB: above the run's threshold, below the one inside
    after = mallinfo2().hblkhd
    del block
    return after - before

outside = mapped_for_a_block()
with reused_blocks():
    inside = mapped_for_a_block()
print(outside, inside, mapped_for_a_block())
"""


def test_blocks_are_reused_inside_and_mapped_on_their_own_again_after() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _REUSE_CHECK], capture_output=True, text=True, check=True
    ).stdout.split()
    if result == ["skip"]:
        pytest.skip("glibc 2.33 or later only")
    outside, inside, after = (int(value) for value in result)
    size = 4 << 20
    assert outside >= size
    assert inside == 0
    assert after >= size
