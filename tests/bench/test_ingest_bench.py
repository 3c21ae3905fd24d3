"""Smoke test of the ingest benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench

EXPECTED_KEYS = {
    "rows",
    "csv_connector_rows_s",
    "parquet_connector_rows_s",
    "csv_ingest_rows_s",
    "parquet_ingest_rows_s",
    "parquet_ingest_after_rows_s",
    "csv_peak_rss_mb",
    "parquet_peak_rss_mb",
    "rss_growth_ratio",
}


@pytest.mark.slow
def test_benchmark_prints_figures_as_key_values(tmp_path: Path) -> None:
    _, pairs = run_bench(
        "bench.ingest.run", "--rows", "20000", "--persons", "2000", "--workdir", str(tmp_path)
    )
    assert set(pairs) >= EXPECTED_KEYS
    figures = {key: float(value) for key, value in pairs.items()}
    assert figures["rows"] == 20000
    assert all(value > 0 for value in figures.values())
