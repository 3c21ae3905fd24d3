"""Benchmark relinking: transit delivered before the card register, linked when the cards come.

``python -m bench.ingest.relink [--rows 1000000] [--persons N] [--workdir DIR] [--compact]``
generates a roll, a card register and a transit delivery (the generators of
``bench.ingest.run``), loads the roll, then the taps (which match nobody: no card is known
yet), then the cards without relinking, and measures the relink that links the taps; then a
second relink after one more person joins the roll, which retries the taps that still match
nobody (cards no one registered) and links none. With ``--compact`` the store is compacted
before the cards arrive, so the relink rewrites clustered parts. The last line printed holds
the figures as ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.ingest.run import (
    REGISTRY_COLUMNS,
    _key_values,
    _services,
    add_size_arguments,
    persons_of,
    registry_chunk,
    write_csv,
    write_register,
    write_transit,
)


def run(*, rows: int, persons: int, workdir: Path, seed: int, compact: bool) -> dict[str, float]:
    """Generate the data, load it in the late order, time the relinks; return the figures."""
    from liveness.db import session_scope
    from liveness.evidence.compaction import compact_store
    from liveness.ingest.relink import relink
    from liveness.ingest.runner import ingest_paths
    from liveness.migrate import upgrade

    registry, cards = write_register(workdir, persons=persons, seed=seed)
    _, transit = write_transit(workdir, rows=rows, persons=persons, seed=seed)
    evidence = workdir / "evidence"
    shutil.rmtree(evidence, ignore_errors=True)
    database = workdir / "relink.sqlite"
    database.unlink(missing_ok=True)
    services = _services(database, evidence)
    upgrade(services.engine)
    figures: dict[str, float] = {"rows": rows, "persons": persons}

    def timed(name: str, step: Callable[[], object]) -> float:
        began = time.perf_counter()
        step()
        seconds = time.perf_counter() - began
        print(f"{name:<44}{seconds:>9.2f} s", flush=True)
        return seconds

    timed("registry", lambda: ingest_paths(services, source="registry", paths=[registry]))
    (report,) = ingest_paths(services, source="transit", paths=[transit])
    print(f"transit: {report.loaded:,} taps loaded, {report.unmatched:,} match nobody")
    if compact:
        timed("compaction", lambda: compact_store(services.sessions, store=services.store))
    timed(
        "cards (no relink)",
        lambda: ingest_paths(services, source="cards", paths=[cards], relink=False),
    )
    reports = []

    def relink_once() -> None:
        with session_scope(services.sessions) as session:
            confidence = services.certification_policy.demographic_confidence
            reports.append(relink(session, store=services.store, demographic_confidence=confidence))

    figures["relink_s"] = timed("relink: the taps link", relink_once)
    first = reports[-1]
    figures["traces_linked"] = first.traces_linked
    figures["parts_rewritten"] = first.parts_rewritten
    figures["relink_traces_s"] = first.traces_linked / max(figures["relink_s"], 1e-9)
    # One more person joins the roll: a relink tries again what still matches nobody.
    extra = workdir / "registry-extra.csv"
    write_csv(extra, REGISTRY_COLUMNS, iter([registry_chunk(persons, 1, seed=seed)]))
    ingest_paths(services, source="registry", paths=[extra], relink=False)
    figures["retry_s"] = timed("relink: retry, nothing links", relink_once)
    figures["retry_rows"] = float(report.loaded - first.traces_linked)
    services.engine.dispose()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.relink", description=__doc__)
    add_size_arguments(parser, rows=1_000_000, rows_help="taps delivered early")
    parser.add_argument("--compact", action="store_true", help="compact before the cards")
    args = parser.parse_args(argv)
    persons = persons_of(args)
    options = {"rows": args.rows, "persons": persons, "seed": args.seed, "compact": args.compact}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(workdir=args.workdir, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-relink-") as tmp:
            figures = run(workdir=Path(tmp), **options)
    print(_key_values(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
