"""Smoke test of the record index benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench


@pytest.mark.slow
def test_record_index_benchmark_prints_figures(tmp_path: Path) -> None:
    output, pairs = run_bench(
        "bench.ingest.records",
        "--records", "2000000", "--delivery", "1000000", "--workdir", str(tmp_path),
    )  # fmt: skip
    assert float(pairs["records"]) == 2_000_000
    assert float(pairs["check_new_s"]) > 0 and float(pairs["naive_peak_mb"]) > 0
    # 1% of a million stored before, half of them changed
    assert "5,000 re-delivered, 5,000 conflicts" in output
