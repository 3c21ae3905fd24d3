"""Smoke test of the record index benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_record_index_benchmark_prints_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.ingest.records",
            "--records", "2000000", "--delivery", "1000000", "--workdir", str(tmp_path),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pairs = dict(field.split("=", 1) for field in done.stdout.strip().splitlines()[-1].split())
    assert float(pairs["records"]) == 2_000_000
    assert float(pairs["check_new_s"]) > 0 and float(pairs["naive_peak_mb"]) > 0
    # 1% of a million stored before, half of them changed
    assert "5,000 re-delivered, 5,000 conflicts" in done.stdout
