"""Smoke test of the start-up benchmark: it runs and reports its figures, without scikit-learn."""

from __future__ import annotations

from tests.bench.conftest import run_bench

EXPECTED_KEYS = [
    "runs", "help_median_s", "python_s", "sklearn_loaded", "pandas_loaded", "pyarrow_loaded",
    "numpy_loaded", "sqlalchemy_loaded", "fastapi_loaded",
]  # fmt: skip


def test_benchmark_prints_figures_as_key_values() -> None:
    _, pairs = run_bench("bench.startup.run", "--runs", "1")
    assert list(pairs) == EXPECTED_KEYS
    assert pairs["sklearn_loaded"] == "false"
    assert float(pairs["help_median_s"]) > 0
