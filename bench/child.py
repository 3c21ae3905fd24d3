"""One measurement in a fresh interpreter, so that every peak RSS belongs to it alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def measure_in_child(module: str, *args: str) -> dict[str, Any]:
    """Run `python -m MODULE --measure ARGS...` and return the figures of its last line."""
    command = [sys.executable, "-m", module, "--measure", *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"measurement {args} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def peak_rss_mb(pid: int | None = None) -> float:
    """Return this process's (or process `pid`'s) peak resident set size in MB.

    VmHWM where there is /proc: `ru_maxrss` would also count the parent the measuring
    interpreter was forked from (Linux carries it over across exec). Another process without
    /proc to read: nan.
    """
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if pid is not None:
        return float("nan")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
