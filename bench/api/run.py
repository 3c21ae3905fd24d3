"""Benchmark the grid queue and the list feed over HTTP on loopback.

``python -m bench.api.run [--persons 1000000] [--clients 50] [--seconds 20] [--workers 2]
[--backend postgresql|sqlite] [--rate R]`` creates a fresh database (PostgreSQL at
LIVENESS_TEST_POSTGRES_URL by default), loads a roll of ``--persons`` persons with open review
tasks for a tenth of them in grids of about 500 persons, and a list of one entry per hundred
persons; serves the API with uvicorn in a separate process; then, for each endpoint in turn,
``--clients`` concurrent clients request it for ``--seconds`` (the grid queue: a random grid,
50 tasks per page; the feed: a random cursor, 100 entries per page). Every request is a real
one: authenticated, audited, committed.

Without --rate the clients run a closed loop (the next request when the last is answered):
that measures the most the server answers, and its latency is then clients / throughput by
Little's law (50 clients at 300 requests/s: 167 ms on average), whatever the server does.
Latency at a given load is measured with --rate R: R requests/s in all, each counted from
when it was due (a server falling behind is not forgiven).

The loaded tables are vacuumed first (as autovacuum keeps a table in service) and the
clients run on uvloop where installed. The last line holds the figures as ``key=value``
pairs: p50/p99 latency in ms and throughput in requests/s of each endpoint, the cores busy
(server, PostgreSQL, client, the rest of the host) and, on PostgreSQL, the share of the busy
backends' time spent waiting for WAL flushes (``*_wal_wait``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get(
    "LIVENESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PERSONS_PER_GRID = 500
T = TypeVar("T")


def _database(backend: str, workdir: Path) -> tuple[str, str | None]:
    """Create an empty database; return its URL and, for PostgreSQL, its name to drop."""
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'state.sqlite'}", None
    name = f"liveness_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(ADMIN_URL).set(database=name).render_as_string(False), name


def _drop(name: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _copy(
    connection: object, table: str, columns: list[str], rows: list[tuple[object, ...]]
) -> None:
    """Load rows with COPY (PostgreSQL) or executemany (SQLite)."""
    raw = connection.connection.dbapi_connection  # type: ignore[attr-defined]
    if raw.__class__.__module__.startswith("psycopg"):
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    raw.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def load(url: str, persons: int, seed: int) -> tuple[int, int, dict[str, str]]:
    """Migrate and load the roll, tasks and list; return grids, entries and tokens per role."""
    from liveness.access import create_client
    from liveness.db import make_engine, make_sessionmaker, session_scope
    from liveness.migrate import upgrade
    from models import Role

    engine = make_engine(url)
    upgrade(engine)
    rng = np.random.default_rng(seed)
    grids = max(1, persons // PERSONS_PER_GRID)
    now = "2025-06-01 00:00:00+00"
    grid_of = rng.integers(0, grids, size=persons)
    with engine.begin() as connection:
        _copy(
            connection,
            "runs",
            ["id", "as_of", "status", "policy_version", "started_at", "report"],
            [(1, "2025-05-31", "published", "bench", now, "{}")],
        )
        _copy(
            connection, "persons",
            ["id", "person_ref", "id_number", "id_status", "name", "sex", "birth_date",
             "region_code", "grid_code", "created_at", "updated_at"],
            [(i + 1, f"P{i + 1:09d}", f"1101011950{i:08d}"[:18], "valid", f"张{i % 1000}", "M",
              "1950-01-01", "110101", f"G{grid_of[i]:05d}", now, now) for i in range(persons)],
        )  # fmt: skip
        tasked = rng.choice(persons, size=max(1, persons // 10), replace=False)
        _copy(
            connection, "review_tasks",
            ["id", "person_id", "kind", "status", "grid_code", "priority", "opened_on", "due_on",
             "reasons", "outcome_detail", "created_at"],
            [(n + 1, int(p) + 1, "home_visit", "open", f"G{grid_of[p]:05d}",
              float(rng.uniform(0, 3000)), "2025-05-31", "2025-06-30",
              '{"rule": "weak", "sources": {}}', "{}", now) for n, p in enumerate(tasked)],
        )  # fmt: skip
        listed = rng.choice(persons, size=max(1, persons // 100), replace=False)
        _copy(
            connection, "benefits",
            ["id", "person_id", "benefit_type", "monthly_amount", "benefit_start", "status",
             "updated_at"],
            [(n + 1, int(p) + 1, "enterprise_pension", "3000.00", "2010-01-01", "suspended", now)
             for n, p in enumerate(listed)],
        )  # fmt: skip
        _copy(
            connection, "list_entries",
            ["id", "seq", "run_id", "person_id", "benefit_id", "action", "reason",
             "effective_on", "amount", "status", "detail", "caused_by", "created_at"],
            [(n + 1, n + 1, 1, int(p) + 1, n + 1, "suspend", "deceased", "2025-06-01", "3000.00",
              "published", "{}", "system", now) for n, p in enumerate(listed)],
        )  # fmt: skip
    if engine.dialect.name == "postgresql":
        tables = ("persons", "review_tasks", "benefits", "list_entries", "runs")
        with engine.begin() as connection:
            for table in tables:
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT max(id) FROM {table}))")
                )  # fmt: skip
        # Vacuumed, as a table in service would be by autovacuum (which may be off on a
        # bench host): otherwise the measured reads are the first to visit the freshly
        # copied rows, and pay for setting their hint bits and writing those pages out.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in tables:
                connection.execute(text(f"VACUUM (ANALYZE) {table}"))
    tokens = {}
    with session_scope(make_sessionmaker(engine)) as session:
        for role in (Role.OPERATOR, Role.PAYMENT):
            tokens[str(role)] = create_client(session, name=f"bench-{role}", role=role).token
    engine.dispose()
    return grids, len(listed), tokens


def _cpu_seconds(server_pid: int) -> dict[str, float]:
    """Return CPU seconds used so far by the server's processes, PostgreSQL's, this process
    and the whole machine (Linux /proc; empty elsewhere).

    The host is shared: what the rest of the machine used during a measurement says how far
    its latencies can be trusted.
    """
    stat = Path("/proc/stat")
    if not stat.exists():
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / tick  # all but idle and iowait
    server = postgres = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        values = tail.split()
        used = (int(values[11]) + int(values[12])) / tick
        if int(entry.name) == server_pid or int(values[1]) == server_pid:
            server += used
        elif head.split("(", 1)[1] == "postgres":
            postgres += used
    return {"server": server, "postgres": postgres, "client": time.process_time(), "all": busy}


class _WalWaits:
    """Samples, every 20 ms in a thread, what the bench database's busy backends wait on.

    Each read commits its audit entry, so it waits for the WAL to reach the disk; on a host
    whose disk is shared, other work's writes can stall that flush for a hundred
    milliseconds and more, and every request in flight with it. `share` is the part of the
    busy backends' samples spent waiting for WAL writes or syncs: a high share says the
    tail came from the disk, not from the API.
    """

    SQL = (
        "SELECT count(*) FILTER (WHERE wait_event IN ('WALSync', 'WALWrite')), count(*) "
        "FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )

    def __init__(self, url: str) -> None:
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        self.waiting = self.busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            while not self._stop.wait(0.02):
                row = connection.execute(self.SQL).fetchone()
                if row is not None:
                    self.waiting += row[0]
                    self.busy += row[1]

    def __enter__(self) -> _WalWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def share(self) -> float:
        """Return the share of busy-backend samples that waited for the WAL."""
        return self.waiting / self.busy if self.busy else 0.0


class _Connection:
    """One keep-alive HTTP/1.1 connection, read and written by hand.

    httpx costs as much CPU per request as the server (about 6 ms on the 2-core bench host,
    which it shares with the server): the bench measured its own client. This costs a tenth.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        """Send a GET and read its answer; return the status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.head)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        """Close the connection if open."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _hammer(
    base: str,
    *,
    clients: int,
    seconds: float,
    token: str,
    path_of: Callable[[random.Random], str],
    rate: float = 0.0,
) -> tuple[list[float], int]:
    """Run `clients` loops requesting path_of(rng) for `seconds`; return latencies and errors.

    Each client keeps one connection. rate 0: closed loop, each client sends its next
    request when the last one is answered. rate R: open loop at R requests/s in all, spread
    evenly over the clients; a request's latency counts from when it was due, so a server
    falling behind is not forgiven.
    """
    latencies: list[float] = []
    errors = 0
    host, port = base.removeprefix("http://").split(":")
    begin = time.perf_counter()
    end = begin + seconds

    async def one(worker: int) -> None:
        nonlocal errors
        rng = random.Random(worker)
        connection = _Connection(host, int(port), token)
        sent = 0
        try:
            while time.perf_counter() < end:
                started = time.perf_counter()
                if rate > 0:
                    due = begin + (sent * clients + worker) / rate
                    sent += 1
                    if due >= end:
                        break
                    if due > started:
                        await asyncio.sleep(due - started)
                    started = due
                try:
                    status = await connection.get(path_of(rng))
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1  # a dropped connection counts against the server
                    await connection.close()
                    continue
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(one(n) for n in range(clients)))
    return latencies, errors


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the clients on uvloop where installed (as the server does).

    The client shares the host's two cores with the server and PostgreSQL, and its event
    loop's wake-ups are part of every latency it measures: the cheaper, the fairer.
    """
    try:
        import uvloop
    except ImportError:  # an optional dependency (not on Windows)
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def main() -> None:
    """Load, serve, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate", type=float, default=0.0,
        help="Open loop at this many requests/s in all (0: closed loop, as fast as answered).",
    )  # fmt: skip
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        url, name = _database(args.backend, workdir)
        try:
            started = time.perf_counter()
            grids, entries, tokens = load(url, args.persons, args.seed)
            print(f"loaded {args.persons:,} persons, {grids:,} grids, {entries:,} entries "
                  f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            env = {
                **os.environ, "LIVENESS_DATABASE_URL": url,
                "LIVENESS_EVIDENCE_DIR": str(workdir / "evidence"),
                "LIVENESS_CONFIG_DIR": str(REPO / "config"),
            }  # fmt: skip
            server = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.asgi:app", "--host", "127.0.0.1",
                 "--port", str(args.port), "--workers", str(args.workers), "--log-level",
                 "warning", "--no-access-log"],
                cwd=REPO, env=env,
            )  # fmt: skip
            base = f"http://127.0.0.1:{args.port}"
            try:
                for _ in range(300):
                    try:
                        if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                figures: dict[str, str] = {
                    "persons": str(args.persons),
                    "clients": str(args.clients),
                    "rate": f"{args.rate:g}",
                }
                last = max(1, entries - 100)
                scenarios = {
                    "queue": (
                        tokens["operator"],
                        lambda r: f"/api/v1/grids/G{r.randrange(grids):05d}/tasks?limit=50",
                    ),
                    "feed": (
                        tokens["payment"],
                        lambda r: f"/api/v1/lists/entries?after={r.randrange(last)}&limit=100",
                    ),
                }
                for label, (token, path_of) in scenarios.items():
                    _run(
                        _hammer(base, clients=args.clients, seconds=2, token=token, path_of=path_of)
                    )  # warm-up
                    waits = _WalWaits(url) if args.backend == "postgresql" else None
                    before = _cpu_seconds(server.pid)
                    with waits or contextlib.nullcontext():
                        latencies, errors = _run(
                            _hammer(base, clients=args.clients, seconds=args.seconds,
                                    token=token, path_of=path_of, rate=args.rate)
                        )  # fmt: skip
                    after = _cpu_seconds(server.pid)
                    ms = np.array(latencies) * 1000
                    figures[f"{label}_p50_ms"] = f"{np.percentile(ms, 50):.1f}"
                    figures[f"{label}_p99_ms"] = f"{np.percentile(ms, 99):.1f}"
                    figures[f"{label}_rps"] = f"{len(ms) / args.seconds:.0f}"
                    figures[f"{label}_errors"] = str(errors)
                    cpu = {k: (after[k] - before[k]) / args.seconds for k in after}
                    if cpu:
                        # Cores busy on average: server, PostgreSQL, this client, and the rest
                        # of the machine (other work on a shared host; kernel threads).
                        cpu["other"] = cpu.pop("all") - sum(cpu.values())
                        for key, value in cpu.items():
                            figures[f"{label}_cpu_{key}"] = f"{value:.2f}"
                    busy = ", ".join(f"{key} {value:.2f}" for key, value in cpu.items())
                    wal = ""
                    if waits is not None:
                        figures[f"{label}_wal_wait"] = f"{waits.share:.2f}"
                        wal = f"; PostgreSQL busy waiting for WAL flushes {waits.share:.0%}"
                    print(f"{label}: {len(ms):,} requests, p50 {figures[f'{label}_p50_ms']} ms, "
                          f"p99 {figures[f'{label}_p99_ms']} ms, {figures[f'{label}_rps']} req/s, "
                          f"{errors} errors; cores busy: {busy}{wal}", flush=True)  # fmt: skip
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            if name is not None:
                _drop(name)
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
