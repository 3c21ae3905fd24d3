"""Issue 13, finding 4: a record_id is recognised within its source whatever its dates."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from connectors import Batch, ConnectorError
from connectors.base import Connector
from liveness.db import session_scope
from liveness.evidence.compaction import compact_store
from liveness.evidence.records import index as index_module
from liveness.evidence.records.index import RECORDS_FOLDER
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import DeathRecord, Delivery, QuarantinedRow
from tests.liveness.ingest.test_ingest import on_roll, write

REGISTRY = """person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,region_code,grid_code,status
P1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,330702,G1,active
P2,330702195002021228,李四,F,1950-02-02,enterprise_pension,2500.50,2010-02-01,330702,G1,active
"""
CARDS = """card_no,card_kind,id_number,issued_on
C1,transit_senior,330702194501011230,2020-01-01
C3,citizen,330702195002021228,2020-01-01
"""
HEADER = "record_id,card_no,tapped_at,city_code\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> Services:
    return on_roll(services_factory(request.param), tmp_path, REGISTRY, CARDS)


def _transit(services: Services) -> list[tuple[str, int, int]]:
    with session_scope(services.sessions) as session:
        table = services.store.read_table(
            session, source="transit", columns=["record_id", "person_id", "day"]
        )
    return sorted(zip(*(table[c].to_pylist() for c in ("record_id", "person_id", "day")),
                      strict=True))  # fmt: skip


def _quarantine(services: Services) -> list[tuple[str, int, str]]:
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(QuarantinedRow.file_name, QuarantinedRow.line, QuarantinedRow.reason).order_by(
                QuarantinedRow.id
            )
        ).all()
    return [(str(f), int(line), str(r)) for f, line, r in rows]


def test_a_record_delivered_again_in_another_month_for_another_person_is_a_conflict(
    services: Services, tmp_path: Path
) -> None:
    first = write(tmp_path, "transit_feb.csv", HEADER + "T1,C1,2025-02-01 08:00:00,330700\n")
    # The same record_id, its date shifted into March, and now on P2's card: before, it loaded
    # a second time, attached to another person.
    again = write(tmp_path, "transit_mar.csv", HEADER + "T1,C3,2025-03-05 08:00:00,330700\n")
    reports = ingest_paths(services, source="transit", paths=[first, again])
    assert [(r.loaded, r.redelivered, r.quarantined) for r in reports] == [(1, 0, 0), (0, 0, 1)]
    (row,) = _transit(services)
    assert row[0] == "T1"
    ((file, line, reason),) = _quarantine(services)
    with session_scope(services.sessions) as session:
        ids = {
            str(f): int(i)
            for f, i in session.execute(select(Delivery.file_name, Delivery.id)).all()
        }
    assert (file, line) == ("transit_mar.csv", 2)
    assert f"was delivered in delivery {ids['transit_feb.csv']} (transit_feb.csv)" in reason
    assert f"delivery {ids['transit_mar.csv']} (transit_mar.csv) changes it" in reason
    assert "record_id T1" in reason and "correction=true" in reason


def test_an_identical_re_delivery_changes_nothing_and_a_correction_replaces(
    services: Services, tmp_path: Path
) -> None:
    first = write(tmp_path, "a.csv", HEADER + "T1,C1,2025-02-01 08:00:00,330700\n"
                   "T2,C1,2025-02-02 08:00:00,330700\n")  # fmt: skip
    same = write(tmp_path, "b.csv", HEADER + "T2,C1,2025-02-02 08:00:00,330700\n"
                  "T1,C1,2025-02-01 08:00:00,330700\n")  # fmt: skip
    moved = write(
        tmp_path, "c.csv",
        "record_id,card_no,tapped_at,city_code,correction\nT1,C3,2025-03-05 08:00:00,330700,true\n",
    )  # fmt: skip
    reports = ingest_paths(services, source="transit", paths=[first, same, moved, same])
    assert [(r.loaded, r.redelivered, r.quarantined) for r in reports] == [
        (2, 0, 0),
        (0, 2, 0),
        (1, 0, 0),
        # T1 as first delivered is still a version the source delivered: a re-delivery.
        (0, 2, 0),
    ]
    rows = _transit(services)
    # Readers see the correction alone: T1 now on P2's card, in March.
    assert [r[0] for r in rows] == ["T1", "T2"]
    assert rows[0][1] != rows[1][1]


def test_repeats_and_changes_within_one_file(services: Services, tmp_path: Path) -> None:
    path = write(
        tmp_path, "t.csv",
        HEADER + "T1,C1,2025-02-01 08:00:00,330700\n" + "T1,C1,2025-02-01 08:00:00,330700\n"
        + "T1,C1,2025-04-01 08:00:00,330700\n",
    )  # fmt: skip
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert (report.loaded, report.redelivered, report.quarantined) == (1, 1, 1)
    ((_, line, reason),) = _quarantine(services)
    assert line == 4 and "came earlier in this delivery" in reason


def test_the_index_is_a_cache_of_the_store(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jan = write(tmp_path, "jan.csv", HEADER + "T1,C1,2025-01-20 08:00:00,330700\n")
    feb = write(tmp_path, "feb.csv", HEADER + "T2,C1,2025-02-20 08:00:00,330700\n")
    ingest_paths(services, source="transit", paths=[jan, feb])
    compact_store(services.sessions, store=services.store)
    # Compaction hands its runs over to the new parts: nothing is read back.
    read_back = index_module._read_back
    calls: list[list[str]] = []

    def spy(paths: list[str], *args: object) -> object:
        calls.append(list(paths))
        return read_back(paths, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(index_module, "_read_back", spy)
    # Compacted parts, then no index at all: rebuilt from the parts, it finds both records.
    again = write(tmp_path, "again.csv", HEADER + "T2,C1,2025-02-20 08:00:00,330700\n"
                   "T1,C1,2025-05-20 08:00:00,330700\n")  # fmt: skip
    (report,) = ingest_paths(services, source="transit", paths=[again])
    assert (report.redelivered, report.quarantined) == (1, 1)
    assert calls == [[]]
    shutil.rmtree(services.store.root / RECORDS_FOLDER)
    again2 = write(tmp_path, "again2.csv", HEADER + "T1,C1,2025-01-20 08:00:00,330700\n"
                    "T2,C3,2025-02-20 08:00:00,330700\n")  # fmt: skip
    (report,) = ingest_paths(services, source="transit", paths=[again2])
    assert (report.redelivered, report.quarantined) == (1, 1)


def test_a_delivery_that_fails_half_way_leaves_nothing_behind(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "t.csv", HEADER + "T1,C1,2025-02-01 08:00:00,330700\n"
                  "T2,C1,2025-03-01 08:00:00,330700\n")  # fmt: skip
    read = Connector.read

    def fail_after_the_first_batch(
        self: Connector, *args: object, **kwargs: object
    ) -> Iterator[Batch]:
        for batch in read(self, *args, batch_rows=1, **kwargs):  # type: ignore[arg-type]
            yield batch
            raise ConnectorError("the line dropped")

    monkeypatch.setattr(Connector, "read", fail_after_the_first_batch)
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert report.status == "refused"
    monkeypatch.undo()
    # The same rows again are new: the refused delivery's records were never stored.
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert (report.loaded, report.redelivered) == (2, 0)
    (report,) = ingest_paths(services, source="transit", paths=[write(tmp_path, "u.csv",
                             path.read_text() + "T3,C1,2025-03-02 08:00:00,330700\n")])  # fmt: skip
    assert (report.loaded, report.redelivered) == (1, 2)


def test_a_changed_discharge_is_a_conflict_and_no_death(services: Services, tmp_path: Path) -> None:
    head = "record_id,id_number,visit_at,institution_code,visit_type,discharge_outcome\n"
    alive = write(tmp_path, "m1.csv", head + "M1,330702194501011230,2025-02-01 09:00:00,H1,"
                   "inpatient_discharge,alive\n")  # fmt: skip
    dead = write(tmp_path, "m2.csv", head + "M1,330702194501011230,2025-02-01 09:00:00,H1,"
                  "inpatient_discharge,deceased\n")  # fmt: skip
    reports = ingest_paths(services, source="medical", paths=[alive, dead])
    assert [(r.loaded, r.quarantined) for r in reports] == [(1, 0), (0, 1)]
    with session_scope(services.sessions) as session:
        assert session.scalars(select(DeathRecord)).all() == []
