"""Smoke test of the ingest benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
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
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.ingest.run",
            "--rows", "20000", "--persons", "2000", "--workdir", str(tmp_path),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    pairs = dict(field.split("=", 1) for field in last.split())
    assert set(pairs) >= EXPECTED_KEYS
    figures = {key: float(value) for key, value in pairs.items()}
    assert figures["rows"] == 20000
    assert all(value > 0 for value in figures.values())
