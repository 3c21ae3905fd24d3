"""Benchmark the record index of one source at the scale of years of traces.

``python -m bench.ingest.records [--records 100000000] [--delivery 10000000] [--workdir DIR]``
builds the record index of a source holding ``--records`` records, delivered ``--delivery`` at
a time in batches of a million (as the ingest checks and publishes them), then measures, each
in a fresh interpreter so that every peak RSS is its own:

- opening the index (its description checked against the manifest, the filter mapped);
- checking a batch of a million new records (every one looked for among all the stored);
- checking a batch of a million records of which 1% were stored before (re-deliveries, half
  of them changed: conflicts);
- for comparison, the naive way: every stored record hash in one sorted array in memory,
  read from the runs, and a batch searched in it.

The last line holds the figures as ``key=value`` pairs. Without ``--workdir`` the index is
built in a temporary folder and removed afterwards (about 17 bytes a record on disk).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.child import measure_in_child, peak_rss_mb
from liveness.evidence.records.index import RecordIndex

BATCH = 1_000_000
# The stored records come from seeds 1000 * delivery + batch; a checked batch from a seed of
# its own each time: a check leaves its records in the filter (as a rolled-back delivery would).
NEW_SEED = 10**9 + time.time_ns() % 10**9


def _manifest(folder: Path, deliveries: int) -> dict[str, Path]:
    return {f"part-{d:06d}": folder / f"part-{d:06d}" for d in range(deliveries)}


def _batch(seed: int, size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size, dtype=np.uint64, endpoint=False)
    contents = rng.integers(1, 2**32, size, dtype=np.uint64).astype(np.uint32)
    return hashes, contents


def build(folder: Path, *, records: int, delivery: int) -> dict[str, float]:
    """Build the index delivery by delivery; return the time it took and its size on disk."""
    began = time.perf_counter()
    index = RecordIndex.open(folder / "index", source="transit", manifest={})
    deliveries = records // delivery
    check_seconds = 0.0
    for d in range(deliveries):
        for b in range(delivery // BATCH):
            hashes, contents = _batch(1000 * d + b)
            started = time.perf_counter()
            verdict = index.check(hashes, contents, np.zeros(BATCH, dtype=bool))
            check_seconds += time.perf_counter() - started
            if verdict.redelivered.any() or verdict.conflict.any():
                raise SystemExit("a random record was taken for a stored one")
        index.publish(delivery_id=d + 1, parts=[f"part-{d:06d}"])
    size = sum(p.stat().st_size for p in (folder / "index").iterdir())
    return {
        "build_s": time.perf_counter() - began, "build_check_s": check_seconds,
        "disk_mb": size / 1e6, "runs": len(index.runs) + len(index.fresh),
    }  # fmt: skip


def child(kind: str, folder: Path, deliveries: int) -> dict[str, float]:
    """Run one measurement on the built index."""
    baseline = peak_rss_mb()
    manifest = _manifest(folder, deliveries)
    if kind == "naive":
        began = time.perf_counter()
        index = RecordIndex.open(folder / "index", source="transit", manifest=manifest)
        every = np.sort(np.concatenate([np.asarray(run.keys) for run in index.runs]))
        loaded = time.perf_counter() - began
        hashes, _ = _batch(NEW_SEED)
        began = time.perf_counter()
        ordered = np.sort(hashes)
        at = np.minimum(np.searchsorted(every, ordered), every.size - 1)
        found = int((every[at] == ordered).sum())
        return {"load_s": loaded, "check_s": time.perf_counter() - began, "found": found,
                "baseline_mb": baseline, "peak_mb": peak_rss_mb()}  # fmt: skip
    began = time.perf_counter()
    index = RecordIndex.open(folder / "index", source="transit", manifest=manifest)
    opened = time.perf_counter() - began
    open_mb = peak_rss_mb()
    hashes, contents = _batch(NEW_SEED)
    if kind == "redeliveries":
        # 1% of the batch stored before: the first records of the first delivery, half changed
        stored, stored_contents = _batch(0)
        take = BATCH // 100
        hashes[:take] = stored[:take]
        contents[:take] = stored_contents[:take]
        contents[: take // 2] += 1
    began = time.perf_counter()
    verdict = index.check(hashes, contents, np.zeros(BATCH, dtype=bool))
    checked = time.perf_counter() - began
    return {
        "open_s": opened, "check_s": checked, "open_peak_mb": open_mb,
        "redelivered": int(verdict.redelivered.sum()), "conflicts": int(verdict.conflict.sum()),
        "baseline_mb": baseline, "peak_mb": peak_rss_mb(),
        "bloom_mb": index.bloom.words.nbytes / 1e6,
    }  # fmt: skip


def measure(*args: str) -> dict[str, float]:
    """Run one measurement in a fresh interpreter and return its figures."""
    return measure_in_child("bench.ingest.records", *args)


def run(*, records: int, delivery: int, workdir: Path) -> dict[str, float]:
    """Build the index, measure, print; return the figures."""
    marker = workdir / "records.json"
    wanted = {"records": records, "delivery": delivery, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        built = json.loads((workdir / "built.json").read_text())
        print(f"reusing the index in {workdir}", flush=True)
    else:
        built = build(workdir, records=records, delivery=delivery)
        (workdir / "built.json").write_text(json.dumps(built))
        marker.write_text(json.dumps(wanted))
    print(f"built {records:,} records in {built['build_s']:.1f} s (checks "
          f"{built['build_check_s']:.1f} s), {built['disk_mb']:,.0f} MB on disk, "
          f"{built['runs']} runs", flush=True)  # fmt: skip
    deliveries = str(records // delivery)
    new = measure("new", str(workdir), deliveries)
    again = measure("redeliveries", str(workdir), deliveries)
    naive = measure("naive", str(workdir), deliveries)
    print(f"open {new['open_s']:.2f} s, peak {new['open_peak_mb']:,.0f} MB (filter "
          f"{new['bloom_mb']:,.0f} MB)")  # fmt: skip
    print(f"a batch of {BATCH:,} new records: {new['check_s']:.3f} s, "
          f"peak {new['peak_mb']:,.0f} MB")  # fmt: skip
    print(f"a batch with 1% stored: {again['check_s']:.3f} s ({again['redelivered']:,} "
          f"re-delivered, {again['conflicts']:,} conflicts), "
          f"peak {again['peak_mb']:,.0f} MB")  # fmt: skip
    print(f"naive, every hash in memory: loaded in {naive['load_s']:.1f} s, a batch in "
          f"{naive['check_s']:.3f} s, peak {naive['peak_mb']:,.0f} MB")  # fmt: skip
    return {
        "records": records, "build_s": built["build_s"], "disk_mb": built["disk_mb"],
        "open_s": new["open_s"], "open_peak_mb": new["open_peak_mb"],
        "check_new_s": new["check_s"], "check_new_peak_mb": new["peak_mb"],
        "check_redelivered_s": again["check_s"], "check_redelivered_peak_mb": again["peak_mb"],
        "naive_load_s": naive["load_s"], "naive_check_s": naive["check_s"],
        "naive_peak_mb": naive["peak_mb"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --measure, one measurement inside a child)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.records", description=__doc__)
    parser.add_argument("--records", type=int, default=100_000_000)
    parser.add_argument("--delivery", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        kind, folder, deliveries = args.measure
        print(json.dumps(child(kind, Path(folder), int(deliveries))))
        return 0
    if args.delivery % BATCH or args.records % args.delivery or args.records < args.delivery:
        parser.error("--delivery must be whole millions and divide --records")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(records=args.records, delivery=args.delivery, workdir=args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-records-") as tmp:
            figures = run(records=args.records, delivery=args.delivery, workdir=Path(tmp))
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in figures.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
