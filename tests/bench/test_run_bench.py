"""Smoke test of the whole-run benchmark: it builds a tiny city, runs twice and reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench

STAGES = ("evidence", "grade", "guard", "publish")


@pytest.mark.slow
def test_benchmark_prints_first_and_nightly_figures(tmp_path: Path) -> None:
    command = ("bench.run.run", "--persons", "500", "--days", "60", "--cache", str(tmp_path))
    _, pairs = run_bench(*command)
    assert pairs["persons"] == "500" and pairs["backend"] == "sqlite"
    for run in ("first", "nightly"):
        assert float(pairs[f"{run}_s"]) > 0 and float(pairs[f"{run}_peak_mb"]) > 0
        assert all(float(pairs[f"{run}_{stage}_s"]) >= 0 for stage in STAGES)
    # The first run assesses everyone; what a later night writes depends on what changed.
    assert int(pairs["first_rows"]) >= 500 and int(pairs["nightly_rows"]) >= 0
    # The built city is kept for the next run; the work copy is gone.
    assert [p.name for p in tmp_path.iterdir()] == ["500-60-1-sqlite"]
    assert (tmp_path / "500-60-1-sqlite" / "built").exists()
    again, _ = run_bench(*command)
    assert "building" not in again
