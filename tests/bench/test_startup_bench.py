"""Smoke test of the start-up benchmark: it runs and reports its figures, without scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPECTED_KEYS = [
    "runs", "help_median_s", "python_s", "sklearn_loaded", "pandas_loaded", "pyarrow_loaded",
    "numpy_loaded", "sqlalchemy_loaded", "fastapi_loaded",
]  # fmt: skip


def test_benchmark_prints_figures_as_key_values() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.startup.run", "--runs", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pairs = dict(field.split("=", 1) for field in done.stdout.strip().splitlines()[-1].split())
    assert list(pairs) == EXPECTED_KEYS
    assert pairs["sklearn_loaded"] == "false"
    assert float(pairs["help_median_s"]) > 0
