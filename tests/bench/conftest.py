"""What the benchmark smoke tests share: running a benchmark as its users do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str) -> tuple[str, dict[str, str]]:
    """Run `python -m MODULE ARGS...`, which must succeed; return its output and last line's pairs."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pairs = dict(field.split("=", 1) for field in done.stdout.strip().splitlines()[-1].split())
    return done.stdout, pairs
