"""Smoke test of the relink benchmark: it runs end to end and reports its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.conftest import run_bench


@pytest.mark.slow
@pytest.mark.parametrize("compact", [False, True])
def test_benchmark_prints_figures_as_key_values(tmp_path: Path, compact: bool) -> None:
    _, pairs = run_bench(
        "bench.ingest.relink", "--rows", "20000", "--persons", "2000", "--workdir", str(tmp_path),
        *(["--compact"] if compact else []),
    )  # fmt: skip
    figures = {key: float(value) for key, value in pairs.items()}
    assert figures["rows"] == 20000
    # About 2% of the taps use cards nobody registered: they stay unlinked, and are retried.
    assert figures["traces_linked"] + figures["retry_rows"] == 20000
    assert 0.9 * 20000 < figures["traces_linked"] < 20000
    assert figures["parts_rewritten"] >= 1
