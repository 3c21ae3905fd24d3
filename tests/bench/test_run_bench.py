"""Smoke test of the whole-run benchmark: it builds a tiny city, runs twice and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("evidence", "grade", "guard", "publish")


@pytest.mark.slow
def test_benchmark_prints_first_and_nightly_figures(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "bench.run.run", "--persons", "500", "--days", "60",
        "--cache", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    pairs = dict(field.split("=", 1) for field in done.stdout.strip().splitlines()[-1].split())
    assert pairs["persons"] == "500" and pairs["backend"] == "sqlite"
    for run in ("first", "nightly"):
        assert float(pairs[f"{run}_s"]) > 0 and float(pairs[f"{run}_peak_mb"]) > 0
        assert all(float(pairs[f"{run}_{stage}_s"]) >= 0 for stage in STAGES)
    # The first run assesses everyone; what a later night writes depends on what changed.
    assert int(pairs["first_rows"]) >= 500 and int(pairs["nightly_rows"]) >= 0
    # The built city is kept for the next run; the work copy is gone.
    assert [p.name for p in tmp_path.iterdir()] == ["500-60-1-sqlite"]
    assert (tmp_path / "500-60-1-sqlite" / "built").exists()
    again = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert again.returncode == 0, again.stderr
    assert "building" not in again.stdout
