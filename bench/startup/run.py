"""Measure how long the `liveness` command takes to start: `liveness --help`, end to end.

``python -m bench.startup.run [--runs 5]`` runs ``liveness --help`` (the console script's own
import of ``liveness.entry.cli:app``) in fresh interpreters, and a bare ``python -c pass`` for
the floor, and prints the median wall time of each; then, in one more interpreter, which heavy
libraries the import of the command line loaded. The last line holds the figures as
``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

# What the `liveness` console script does, without depending on which script is on PATH.
HELP = "import sys; from liveness.entry.cli import app; sys.argv[0] = 'liveness'; app()"
HEAVY = ("sklearn", "pandas", "pyarrow", "numpy", "sqlalchemy", "fastapi")
PROBE = f"import sys, liveness.entry.cli; print(*[m in sys.modules for m in {HEAVY!r}])"


def median_seconds(command: list[str], *, runs: int) -> float:
    """Return the median wall time of `runs` fresh runs of `command`."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh runs per measurement")
    args = parser.parse_args(argv)
    python_s = median_seconds([sys.executable, "-c", "pass"], runs=args.runs)
    help_s = median_seconds([sys.executable, "-c", HELP, "--help"], runs=args.runs)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, text=True
    ).stdout.split()
    loaded = {name: flag == "True" for name, flag in zip(HEAVY, probe, strict=True)}
    print(f"liveness --help: {help_s:.2f} s median of {args.runs} (python alone {python_s:.2f} s)")
    print("loaded by the command line: " + (", ".join(k for k, v in loaded.items() if v) or "-"))
    figures = {"runs": args.runs, "help_median_s": f"{help_s:.3f}", "python_s": f"{python_s:.3f}"}
    figures.update({f"{name}_loaded": str(flag).lower() for name, flag in loaded.items()})
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
