"""A run gives its large arrays back to the system: glibc's threshold fixed, Arrow on malloc."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import numpy as np
import pyarrow as pa
import pytest

from liveness.memory import return_large_blocks, reused_blocks


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


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 and later)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mapped_bytes() -> int | None:
    """Return the bytes glibc holds in blocks mapped on their own, None where it cannot say."""
    name = ctypes.util.find_library("c")
    mallinfo2 = getattr(ctypes.CDLL(name), "mallinfo2", None) if name else None
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().hblkhd)


def test_blocks_are_reused_inside_and_mapped_on_their_own_again_after() -> None:
    if not return_large_blocks() or _mapped_bytes() is None:
        pytest.skip("glibc 2.33 or later only")
    size = 4 << 20  # above the run's threshold, below the one inside

    def mapped_for_a_block() -> int:
        before = _mapped_bytes() or 0
        block = np.ones(size // 8)
        after = _mapped_bytes() or 0
        del block
        return after - before

    assert mapped_for_a_block() >= size
    with reused_blocks():
        assert mapped_for_a_block() == 0
    assert mapped_for_a_block() >= size
