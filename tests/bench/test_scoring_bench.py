"""Smoke tests of the scoring benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from tests.bench.conftest import run_bench

EXPECTED_KEYS = [
    "persons", "traces", "ours_s", "duckdb_s", "ratio", "scan_s", "peak_rss_mb", "increment_s",
    "ours_first_s", "first_ratio", "ours_changed_s", "changed_ratio", "ours_next_s",
    "ours_sys_s", "duckdb_sys_s",
]  # fmt: skip
SPARK_KEYS = [
    "spark_s",
    "spark_fixed_s",
    "spark_ratio",
    "spark_equal",
    "spark_tasks",
    "spark_peak_mb",
]
RANGE_KEYS = ["ranges_s", "ranges_count", "ranges_peak_mb", "ranges_here_mb"]


@pytest.mark.slow
def test_benchmark_prints_figures_as_key_values(tmp_path: Path) -> None:
    _, pairs = run_bench(
        "bench.scoring.run",
        "--persons", "500", "--traces", "20000", "--months", "3", "--workdir", str(tmp_path),
        "--range-persons", "64",
    )  # fmt: skip
    assert list(pairs) == [*EXPECTED_KEYS, *RANGE_KEYS]
    # Graded by ranges of 64 ids (0 to 500: eight), every level equal ours (else it fails).
    assert int(pairs["ranges_count"]) == 8
    assert int(pairs["persons"]) == 500 and int(pairs["traces"]) == 20000
    # duckdb_s and ratio are "nan" where duckdb is not installed; the rest are measured.
    measured = ("ours_s", "scan_s", "peak_rss_mb", "increment_s", "ours_first_s", "ours_changed_s",
                "ours_next_s")  # fmt: skip
    for key in measured:
        assert float(pairs[key]) > 0
    assert float(pairs["ours_sys_s"]) >= 0
    assert list(tmp_path.iterdir()) == []  # the temporary store is cleaned up


@pytest.mark.slow
def test_benchmark_measures_spark_beside_ours(tmp_path: Path) -> None:
    if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
        # On CI the Spark engine must run (as its own tests): a missing runtime fails.
        if os.environ.get("CI"):
            pytest.fail("--engine spark cannot run on CI: no PySpark or no Java runtime")
        pytest.skip("the Spark engine needs PySpark and a Java runtime")
    output, pairs = run_bench(
        "bench.scoring.run",
        "--persons", "300", "--traces", "5000", "--months", "2", "--workdir", str(tmp_path),
        "--engine", "spark", "--spark-partitions", "2", "--range-persons", "100",
    )  # fmt: skip
    assert list(pairs) == [*EXPECTED_KEYS, *SPARK_KEYS, *RANGE_KEYS]
    assert int(pairs["ranges_count"]) == 4 and float(pairs["ranges_here_mb"]) > 0
    assert "by ranges of 100 person ids (spark on local[2])" in output
    # Spark's features and levels equal ours for every person (the run fails otherwise).
    assert pairs["spark_equal"] == "1"
    assert float(pairs["spark_s"]) > 0 and float(pairs["spark_fixed_s"]) > 0
    assert int(pairs["spark_tasks"]) >= 1
    assert "spark on local[2]" in output
    assert list(tmp_path.iterdir()) == []
