"""Compaction: one clustered part per month, invisible to readers, idempotent, safe to clean."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from liveness.db import session_scope
from liveness.entry.cli.evidence import evidence_app
from liveness.evidence.compaction import compact, months_to_compact, remove_orphans
from liveness.evidence.parts import SORTED_KEY
from liveness.evidence.store import EvidenceStore
from liveness.services import Services
from liveness.settings import get_settings
from models import EvidencePart
from tests.liveness.conftest import REPO
from tests.liveness.evidence.test_store import Row, append

HISTORY: list[list[Row]] = [
    [
        ("T1", 9, "2025-01-10", "tap", False),
        ("T2", 2, "2025-01-20", "tap", False),
        ("T3", 5, "2025-01-25", "tap_face", False),
        ("T4", -1, "2025-02-03", "tap", False),
    ],
    [
        ("T5", 1, "2025-01-02", "tap", False),
        ("T1", 4, "2025-01-10", "tap_face", True),
        ("T2", 2, "2025-03-02", "tap", True),  # moved to another month
        ("T6", 7, "2025-02-14", "teleport", False),
    ],
    [("T1", 3, "2025-01-11", "tap", True), ("T7", 2, "2025-01-02", "tap", False)],
]


def everything(session: Session, store: EvidenceStore) -> list[dict[str, object]]:
    table = store.read_table(
        session, source="transit",
        columns=["record_id", "record_hash", "person_id", "day", "event_at", "kind", "link",
                 "link_key", "delivery_id"],
    )  # fmt: skip
    return sorted(table.to_pylist(), key=lambda row: str(row["record_id"]))


@pytest.fixture
def store(tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(tmp_path / "evidence")


def compact_all(session: Session, store: EvidenceStore) -> list[bool]:
    return [
        compact(session, store=store, source=source, month=month).compacted
        for source, month in months_to_compact(session)
    ]


def test_compaction_is_invisible_to_readers_and_idempotent(
    session: Session, store: EvidenceStore
) -> None:
    for rows in HISTORY:
        append(session, store, rows)
    before = everything(session, store)
    assert len(before) == 7
    assert compact_all(session, store) == [True, True, True]
    parts = list(session.scalars(select(EvidencePart).order_by(EvidencePart.id)))
    assert [p.month for p in parts] == ["2025-01", "2025-02", "2025-03"]
    assert everything(session, store) == before
    for part in parts:
        table = pq.read_table(store.path_of(part))
        assert pq.read_metadata(store.path_of(part)).metadata[SORTED_KEY]
        keys = list(zip(table["person_id"].to_pylist(), table["day"].to_pylist(), strict=True))
        assert keys == sorted(keys)
    # The January correction superseded a January original: settled, no longer flagged.
    january = pq.read_table(store.path_of(parts[0])).to_pylist()
    assert [r["record_id"] for r in january if r["correction"]] == []
    # T2's original stays: its correction lives in March, where readers still find it flagged.
    assert sorted(r["record_id"] for r in january) == ["T1", "T2", "T3", "T5", "T7"]

    files = {p.path: store.path_of(p).read_bytes() for p in parts}
    assert compact_all(session, store) == [False, False, False]
    again = list(session.scalars(select(EvidencePart).order_by(EvidencePart.id)))
    assert [p.id for p in again] == [p.id for p in parts]
    assert {p.path: store.path_of(p).read_bytes() for p in again} == files
    assert everything(session, store) == before

    # A correction arriving after compaction still replaces the compacted version.
    append(session, store, [("T3", 6, "2025-01-26", "tap", True)])
    assert compact_all(session, store) == [True, False, False]
    after = {r["record_id"]: r["person_id"] for r in everything(session, store)}
    assert after["T3"] == 6 and len(after) == 7


def test_orphan_removal_never_touches_a_referenced_file(
    session: Session, store: EvidenceStore
) -> None:
    for rows in HISTORY:
        append(session, store, rows)
    old = {store.path_of(p) for p in session.scalars(select(EvidencePart))}
    compact_all(session, store)
    current = {store.path_of(p) for p in session.scalars(select(EvidencePart))}
    stray = next(iter(current)).with_name("part-00000009-crashed.parquet.tmp")
    stray.write_bytes(b"half a file")
    # Everything is fresh: a reader may still hold the old manifest, so nothing goes yet.
    assert remove_orphans(session, store=store) == []
    ancient = 1_000_000_000
    for path in (*old, *current, stray):
        os.utime(path, (ancient, ancient))
    removed = remove_orphans(session, store=store, grace=dt.timedelta(0))
    assert set(removed) == old | {stray}
    assert all(path.exists() for path in current)
    assert remove_orphans(session, store=store, grace=dt.timedelta(0)) == []
    assert len(everything(session, store)) == 7


@pytest.fixture
def cli_services(
    services_factory: Callable[[str], Services], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    services = services_factory("sqlite")
    settings = services.settings
    monkeypatch.setenv("LIVENESS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LIVENESS_EVIDENCE_DIR", str(settings.evidence_dir))
    monkeypatch.setenv("LIVENESS_CONFIG_DIR", str(REPO / "config"))
    get_settings.cache_clear()
    yield services
    get_settings.cache_clear()


def test_the_compact_command_compacts_then_removes_orphans(cli_services: Services) -> None:
    store = cli_services.store
    with session_scope(cli_services.sessions) as session:
        for rows in HISTORY:
            append(session, store, rows)
        before = everything(session, store)
    runner = CliRunner()
    # Registered as liveness/entry/cli/__init__.py does: `app.add_typer(evidence_app, name="evidence")`.
    root = typer.Typer()
    root.add_typer(evidence_app, name="evidence")
    result = runner.invoke(
        root, ["evidence", "compact", "--month", "2025-01", "--grace-minutes", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "2025-01" in result.output and "3 unreferenced files removed" in result.output
    with session_scope(cli_services.sessions) as session:
        months = [p.month for p in session.scalars(select(EvidencePart))]
        assert sorted(months) == ["2025-01", "2025-02", "2025-02", "2025-03"]
        assert everything(session, store) == before
    result = runner.invoke(root, ["evidence", "compact", "--grace-minutes", "0"])
    assert result.exit_code == 0, result.output
    files = sorted(store.root.rglob("*.parquet"))
    assert len(files) == 3
    result = runner.invoke(root, ["evidence", "compact", "--month", "2025-13"])
    assert result.exit_code == 2 and "YYYY-MM" in result.output
