"""Smoke test of the scoring benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench

EXPECTED_KEYS = [
    "persons", "traces", "ours_s", "duckdb_s", "ratio", "scan_s", "peak_rss_mb", "increment_s",
    "ours_first_s", "first_ratio",
]  # fmt: skip


@pytest.mark.slow
def test_benchmark_prints_figures_as_key_values(tmp_path: Path) -> None:
    _, pairs = run_bench(
        "bench.scoring.run",
        "--persons", "500", "--traces", "20000", "--months", "3", "--workdir", str(tmp_path),
    )  # fmt: skip
    assert list(pairs) == EXPECTED_KEYS
    assert int(pairs["persons"]) == 500 and int(pairs["traces"]) == 20000
    # duckdb_s and ratio are "nan" where duckdb is not installed; the rest are measured.
    for key in ("ours_s", "scan_s", "peak_rss_mb", "increment_s", "ours_first_s"):
        assert float(pairs[key]) > 0
    assert list(tmp_path.iterdir()) == []  # the temporary store is cleaned up
