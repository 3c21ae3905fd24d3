"""A run gives its large arrays back to the system: glibc's threshold fixed, Arrow on malloc."""

from __future__ import annotations

import platform

import numpy as np
import pyarrow as pa

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
