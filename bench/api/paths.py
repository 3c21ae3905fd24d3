"""Time the two paths of the hot reads, page by page: the session path and the one statement.

``python -m bench.api.paths [--persons 1000000] [--requests 2000] [--seed S]`` loads the roll
of ``bench.api.run`` into a fresh PostgreSQL database (LIVENESS_TEST_POSTGRES_URL), builds the
API in this process and asks for a page of a random grid's queue (50 tasks) and of the list
feed from a random cursor (100 entries), ``--requests`` times each, one at a time, through the
handlers (httpx's ASGI transport: no socket, no server process), once with the one-statement
reads (`api.deps.ReadPool`) and once without (the session path SQLite always takes). Every
request is authenticated, audited and committed. The paths alternate in blocks, so that load
from other work on the host falls on both alike.

Last line, as ``key=value`` pairs per endpoint and path (`orm`, `sql`): the mean and p99 wall
time of a request in ms and the CPU milliseconds a request costs this process (the handler
and the client) and PostgreSQL (every `postgres` process of the host: other sessions' work
counts too, so read it on a quiet host).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.api.run import REPO, _cpu_seconds, _database, _drop, load

BLOCK = 100  # requests per block; the paths alternate block by block


async def _measure(
    url: str, workdir: Path, *, grids: int, entries: int, tokens: dict[str, str], requests: int,
    seed: int,
) -> dict[str, str]:  # fmt: skip
    """Ask each endpoint `requests` times on each path; return the figures."""
    from api.app import api_services, create_app
    from api.deps import ReadPool
    from liveness.settings import Settings

    settings = Settings(
        database_url=url, evidence_dir=workdir / "evidence", config_dir=REPO / "config"
    )
    app = create_app(api_services(settings))
    reads: ReadPool = app.state.reads
    last = max(1, entries - 100)
    endpoints = {
        "queue": (tokens["operator"], lambda r: f"/api/v1/grids/G{r.randrange(grids):05d}/tasks"),
        "feed": (
            tokens["payment"],
            lambda r: f"/api/v1/lists/entries?after={r.randrange(last)}&limit=100",
        ),
    }
    figures: dict[str, str] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for label, (token, path_of) in endpoints.items():
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(seed)
            walls: dict[str, list[float]] = {"orm": [], "sql": []}
            cpu = {"orm": [0.0, 0.0], "sql": [0.0, 0.0]}  # this process, PostgreSQL
            for path in ("orm", "sql"):  # warm-up: connections, prepared statements, caches
                app.state.reads = reads if path == "sql" else None
                for _ in range(50):
                    assert (await client.get(path_of(rng), headers=headers)).status_code == 200
            for block in range(2 * requests // BLOCK):
                path = ("orm", "sql")[block % 2]
                app.state.reads = reads if path == "sql" else None
                before = _cpu_seconds(-1)
                for _ in range(BLOCK):
                    started = time.perf_counter()
                    answer = await client.get(path_of(rng), headers=headers)
                    walls[path].append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
                after = _cpu_seconds(-1)
                cpu[path][0] += after["client"] - before["client"]
                cpu[path][1] += after["postgres"] - before["postgres"]
            for path, times in walls.items():
                ms = np.array(times) * 1000
                figures[f"{label}_{path}_mean_ms"] = f"{ms.mean():.2f}"
                figures[f"{label}_{path}_p99_ms"] = f"{np.percentile(ms, 99):.2f}"
                figures[f"{label}_{path}_cpu_ms"] = f"{cpu[path][0] * 1000 / len(ms):.2f}"
                figures[f"{label}_{path}_pg_cpu_ms"] = f"{cpu[path][1] * 1000 / len(ms):.2f}"
                print(f"{label} {path}: {len(ms)} requests, mean {ms.mean():.2f} ms, "
                      f"p99 {np.percentile(ms, 99):.2f} ms, CPU per request: this process "
                      f"{figures[f'{label}_{path}_cpu_ms']} ms, PostgreSQL "
                      f"{figures[f'{label}_{path}_pg_cpu_ms']} ms", flush=True)  # fmt: skip
    reads.close()
    app.state.services.engine.dispose()
    return figures


def main() -> None:
    """Load, measure both paths, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url, name = _database("postgresql", Path(folder))
        assert name is not None
        try:
            started = time.perf_counter()
            grids, entries, tokens = load(url, args.persons, args.seed)
            print(f"loaded {args.persons:,} persons, {grids:,} grids, {entries:,} entries "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            figures = {"persons": str(args.persons), "requests": str(args.requests)}
            figures.update(
                asyncio.run(
                    _measure(url, Path(folder), grids=grids, entries=entries, tokens=tokens,
                             requests=args.requests, seed=args.seed)
                )
            )  # fmt: skip
        finally:
            _drop(name)
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
