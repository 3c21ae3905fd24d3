"""Late evidence links late: what matched nobody is linked again when the roll or cards change."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.evidence.compaction import compact_store, remove_orphans
from liveness.evidence.summaries import SummaryCache
from liveness.ingest.relink import RelinkReport, relink, relink_pending
from liveness.ingest.runner import ingest_all, ingest_paths
from liveness.services import Services
from models import (
    Card,
    DeathMatch,
    DeathRecord,
    Deregistration,
    EvidencePart,
    ListEntry,
    Person,
    ReviewTask,
    SourceVolume,
    TaskKind,
    assessments_as_of,
)
from tests.liveness.conftest import invoke_cli

HEADER = (
    "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,"
    "region_code,grid_code,status\n"
)
P1 = "P1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,330702,G1,active\n"
P2 = "P2,330702195002021228,李四,F,1950-02-02,enterprise_pension,2500.50,2010-02-01,330702,G1,active\n"
P3 = "P3,330702195503031213,王五,M,1955-03-03,enterprise_pension,2000.00,2015-03-01,330702,G2,active\n"
CARDS_HEADER = "card_no,card_kind,id_number,issued_on,cancelled_on\n"
C1 = "C1,transit_senior,330702194501011230,2020-01-01,\n"
C2 = "C2,transit_senior,330702195002021228,2020-01-01,\n"
C3 = "C3,citizen,330702195503031213,2025-03-02,\n"  # a new card: taps arrive before it does
TRANSIT_HEADER = "record_id,card_no,tapped_at,city_code,face_match\n"
MEDICAL_HEADER = "record_id,id_number,visit_at,institution_code,visit_type\n"
AS_OF = dt.date(2025, 6, 15)


def _relink(session: Session, services: Services) -> RelinkReport:
    """Relink as the engine does, with the policy's linking confidence."""
    confidence = services.certification_policy.demographic_confidence
    return relink(session, store=services.store, demographic_confidence=confidence)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    # The cremation office delivers in GB18030 (config/sources.toml).
    path.write_text(text, encoding="gb18030" if name.startswith("cremation") else "utf-8")
    return path


def _transit(folder: Path, name: str = "transit.csv") -> Path:
    """Taps of P1 (C1) and P2 (C2) in February (long window) and May (recent window)."""
    rows = [
        f"T{card}{month}{day},{card},2025-{month:02d}-{day:02d} 08:00:00,330700,true\n"
        for card in ("C1", "C2")
        for month in (2, 5)
        for day in (3, 10, 17)
    ]
    return _write(folder, name, TRANSIT_HEADER + "".join(rows))


def _medical(folder: Path, name: str = "medical.csv") -> Path:
    """Outpatient visits of P1 and P2 in May: a second source that agrees."""
    rows = [
        f"M{person}{day},{number},2025-05-{day:02d} 09:00:00,H1,outpatient\n"
        for person, number in (("1", "330702194501011230"), ("2", "330702195002021228"))
        for day in (5, 20)
    ]
    return _write(folder, name, MEDICAL_HEADER + "".join(rows))


def _linked(services: Services, source: str) -> dict[str, int]:
    """Return the person each stored trace of `source` links to (-1: nobody), by record."""
    with session_scope(services.sessions) as session:
        table = services.store.read_table(
            session, source=source, columns=["record_id", "person_id"]
        ).to_pylist()
    return {row["record_id"]: row["person_id"] for row in table}


def _person_ids(services: Services) -> dict[str, int]:
    with session_scope(services.sessions) as session:
        return dict(session.execute(select(Person.person_ref, Person.id)).all())


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, services_factory: Callable[[str], Services]) -> Services:
    return services_factory(request.param)


def _grade(services: Services, as_of: dt.date) -> dict[str, str]:
    """Run certification as of `as_of`; return each person's level by reference."""
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=as_of, store=services.store, policies=services.policies)
        standing = assessments_as_of(run.id)
        rows = session.execute(
            select(Person.person_ref, standing.level).join(
                standing, standing.person_id == Person.id
            )
        ).all()
    return {ref: str(level) for ref, level in rows}


def test_transit_before_the_roll_and_cards_is_graded_from_its_traces(
    fresh: Services, services_factory: Callable[[str], Services], tmp_path: Path
) -> None:
    # The finding: transit and medical ingested before the registry and the cards.
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r0.csv", HEADER + P3)])
    (transit,) = ingest_paths(fresh, source="transit", paths=[_transit(tmp_path)])
    (medical,) = ingest_paths(fresh, source="medical", paths=[_medical(tmp_path)])
    assert (transit.unmatched, medical.unmatched) == (12, 4)
    with session_scope(fresh.sessions) as session:
        volumes = dict(session.execute(select(SourceVolume.day, SourceVolume.traces)).all())
    # A first run grades P1 and P2 nobody (they are not on the roll) and keeps summaries of
    # the February parts, whose traces then matched nobody.
    _grade(fresh, AS_OF - dt.timedelta(days=1))
    summaries = SummaryCache(fresh.store.root).summaries()
    assert summaries

    registry = _write(tmp_path, "r1.csv", HEADER + P1 + P2 + P3)
    ingest_paths(fresh, source="registry", paths=[registry])
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", CARDS_HEADER + C1 + C2)])
    ids = _person_ids(fresh)
    assert set(_linked(fresh, "transit").values()) == {ids["P1"], ids["P2"]}
    assert set(_linked(fresh, "medical").values()) == {ids["P1"], ids["P2"]}
    levels = _grade(fresh, AS_OF)

    # Delivered in the right order, the same files grade the same.
    baseline = services_factory(fresh.engine.dialect.name)
    ingest_paths(baseline, source="registry", paths=[registry])
    ingest_paths(baseline, source="cards", paths=[tmp_path / "c.csv"])
    ingest_paths(baseline, source="transit", paths=[tmp_path / "transit.csv"])
    ingest_paths(baseline, source="medical", paths=[tmp_path / "medical.csv"])
    assert levels == _grade(baseline, AS_OF)
    assert levels["P1"] == levels["P2"] == "strong"
    with session_scope(fresh.sessions) as session:
        visits = session.scalar(
            select(func.count())
            .select_from(ReviewTask)
            .where(ReviewTask.kind == TaskKind.HOME_VISIT)
        )
        # Relinked traces were counted when they arrived: the daily volumes are unchanged.
        after = dict(session.execute(select(SourceVolume.day, SourceVolume.traces)).all())
        assert not relink_pending(session)
    assert visits == 1  # P3 alone, who left no trace
    assert after == volumes


def test_a_relinked_part_is_not_hidden_by_its_kept_summary(fresh: Services, tmp_path: Path) -> None:
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r0.csv", HEADER + P3)])
    # Only February taps: P2's level rests on the long window, read from a kept summary.
    text = TRANSIT_HEADER + "".join(
        f"T{day},C2,2025-02-{day:02d} 08:00:00,330700,true\n" for day in (3, 10, 17)
    )
    ingest_paths(fresh, source="transit", paths=[_write(tmp_path, "t.csv", text)])
    _grade(fresh, AS_OF - dt.timedelta(days=1))
    with session_scope(fresh.sessions) as session:
        (before,) = session.scalars(select(EvidencePart.path)).all()
    assert SummaryCache(fresh.store.root).summaries()

    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + P2 + P3)])
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", CARDS_HEADER + C2)])
    with session_scope(fresh.sessions) as session:
        (part,) = session.scalars(select(EvidencePart)).all()
        assert (part.path != before, part.unlinked_rows) == (True, 0)
    assert _grade(fresh, AS_OF)["P2"] == "medium"
    # The replaced file and its summary go with the orphans, once their grace has passed.
    summaries = SummaryCache(fresh.store.root)
    assert Path(before) in {summaries.part_of(path) for path in summaries.summaries()}
    with session_scope(fresh.sessions) as session:
        remove_orphans(session, store=fresh.store, grace=dt.timedelta(seconds=-1))
    assert not (fresh.store.root / before).exists()
    assert Path(before) not in {summaries.part_of(path) for path in summaries.summaries()}


def test_a_new_cards_taps_link_when_the_card_arrives(fresh: Services, tmp_path: Path) -> None:
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + P1 + P3)])
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c1.csv", CARDS_HEADER + C1)])
    text = TRANSIT_HEADER + (
        "N1,C3,2025-03-01 08:00:00,330700,\n"  # the day before the card was issued
        "N2,C3,2025-03-02 08:00:00,330700,\n"
        "N3,C3,2025-03-05 08:00:00,330700,\n"
        "N4,C1,2025-03-05 08:00:00,330700,\n"
    )
    ingest_paths(fresh, source="transit", paths=[_write(tmp_path, "t.csv", text)])
    assert _linked(fresh, "transit")["N2"] == -1
    with session_scope(fresh.sessions) as session:
        (part,) = session.scalars(select(EvidencePart)).all()
        assert part.unlinked_rows == 3
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c2.csv", CARDS_HEADER + C3)])
    ids = _person_ids(fresh)
    assert _linked(fresh, "transit") == {
        "N1": -1,
        "N2": ids["P3"],
        "N3": ids["P3"],
        "N4": ids["P1"],
    }
    with session_scope(fresh.sessions) as session:
        (part,) = session.scalars(select(EvidencePart)).all()
        assert part.unlinked_rows == 1
        # Re-delivering the taps changes nothing: their record hashes are still recognised.
    again = _write(tmp_path, "t2.csv", text + "N5,C3,2025-03-06 08:00:00,330700,\n")
    (report,) = ingest_paths(fresh, source="transit", paths=[again])
    assert (report.loaded, report.redelivered, report.unmatched) == (1, 4, 0)


def test_a_corrected_identity_number_links_the_visits_made_under_it(
    fresh: Services, tmp_path: Path
) -> None:
    wrong = P1.replace("330702194501011230", "330702196004041235")
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + wrong)])
    (medical,) = ingest_paths(fresh, source="medical", paths=[_medical(tmp_path)])
    assert medical.unmatched == 4
    # C1 carries the right number (no holder yet), C4 the wrong one (P1, for now).
    cards = CARDS_HEADER + C1 + "C4,citizen,330702196004041235,2020-01-01,\n"
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", cards)])
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r2.csv", HEADER + P1)])
    ids = _person_ids(fresh)
    linked = _linked(fresh, "medical")
    assert [linked[f"M1{day}"] for day in (5, 20)] == [ids["P1"]] * 2
    assert [linked[f"M2{day}"] for day in (5, 20)] == [-1, -1]  # P2 is not on the roll
    with session_scope(fresh.sessions) as session:
        holders = dict(session.execute(select(Card.card_no, Card.person_id)).all())
    assert holders == {"C1": ids["P1"], "C4": None}


def test_death_and_deregistration_records_match_once_the_person_is_on_the_roll(
    fresh: Services, tmp_path: Path
) -> None:
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + P1)])
    cremation = _write(
        tmp_path,
        "cremation.csv",
        "record_id,id_number,name,sex,birth_date,died_on,cremated_on\n"
        "R1,330702195002021228,李四,F,1950-02-02,2025-02-10,2025-02-12\n"
        "R2,,王五,M,1955-03-03,2025-03-10,2025-03-12\n",  # no number: name, sex, birth date
    )
    deregistration = _write(
        tmp_path,
        "deregistration.csv",
        "record_id,id_number,name,deregistered_on,reason,new_id_number\n"
        "D1,330702195503031213,王五,2025-01-05,moved_out,330702196004041235\n",
    )
    (report,) = ingest_paths(fresh, source="cremation", paths=[cremation])
    ingest_paths(fresh, source="deregistration", paths=[deregistration])
    assert report.unmatched == 2
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r2.csv", HEADER + P2 + P3)])
    ids = _person_ids(fresh)
    with session_scope(fresh.sessions) as session:
        records = {
            r.record_id: (r.person_id, r.match) for r in session.scalars(select(DeathRecord))
        }
        moved = session.scalars(select(Deregistration.person_id)).one()
    assert records == {
        "R1": (ids["P2"], DeathMatch.ID_NUMBER),
        "R2": (ids["P3"], DeathMatch.DEMOGRAPHIC),
    }
    assert moved == ids["P3"]
    levels = _grade(fresh, dt.date(2025, 4, 15))
    assert levels["P2"] == levels["P3"] == "deceased"
    with session_scope(fresh.sessions) as session:
        suspended = session.scalars(select(ListEntry.person_id)).all()
    assert sorted(suspended) == sorted([ids["P2"], ids["P3"]])


def test_a_card_delivered_before_its_holder_links_once_the_holder_is_on_the_roll(
    fresh: Services, tmp_path: Path
) -> None:
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", CARDS_HEADER + C1)])
    ingest_paths(fresh, source="transit", paths=[_transit(tmp_path)])
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + P1)])
    ids = _person_ids(fresh)
    with session_scope(fresh.sessions) as session:
        assert session.scalar(select(Card.person_id)) == ids["P1"]
    linked = _linked(fresh, "transit")
    assert {person for record, person in linked.items() if record.startswith("TC1")} == {ids["P1"]}
    assert {person for record, person in linked.items() if record.startswith("TC2")} == {-1}


def test_ingest_all_relinks_once_after_every_source(
    fresh: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The configured delivery folders are relative to where the command runs.
    monkeypatch.chdir(tmp_path)
    inbox = tmp_path / "var" / "inbox"
    for source in ("registry", "cards", "transit"):
        (inbox / source).mkdir(parents=True)
    _transit(inbox / "transit")
    ingest_all(fresh)
    assert set(_linked(fresh, "transit").values()) == {-1}
    _write(inbox / "registry", "r.csv", HEADER + P1 + P2)
    _write(inbox / "cards", "c.csv", CARDS_HEADER + C1 + C2)
    ingest_all(fresh)
    assert -1 not in _linked(fresh, "transit").values()
    with session_scope(fresh.sessions) as session:
        assert not relink_pending(session)
        # Nothing changed since: a relink reads no part.
        assert _relink(session, fresh).parts_read == 0


def test_unmatched_says_why_and_relink_links(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke_cli(cli_env, "db", "upgrade")
    registry = _write(tmp_path, "r.csv", HEADER + P1 + P3)
    cards = _write(tmp_path, "c.csv", CARDS_HEADER + C1 + C3)
    transit = _write(
        tmp_path,
        "t.csv",
        TRANSIT_HEADER + "A1,C9,2025-03-01 08:00:00,330700,\n"  # no such card
        "A2,C3,2025-03-01 08:00:00,330700,\n",  # C3 was issued the day after
    )
    medical = _write(
        tmp_path,
        "m.csv",
        MEDICAL_HEADER + "B1,110101195001011239,2025-03-01 09:00:00,H1,outpatient\n"
        "B2,330702194501011231,2025-03-01 09:00:00,H1,outpatient\n",  # wrong check character
    )
    for source, path in (("transit", transit), ("medical", medical), ("cards", cards)):
        assert invoke_cli(cli_env, "ingest", "--source", source, str(path))[0] == 0
    code, output = invoke_cli(cli_env, "unmatched", "--json")
    assert code == 0
    reasons = {
        row["link_key"]: row["reason"]
        for row in map(json.loads, output.splitlines())
        if row["kind"] == "trace"
    }
    assert reasons == {
        "C9": "no card with this number",
        "C3": "card holder not on the roll",
        "110101195001011239": "identity number not on the roll",
        "330702194501011231": "invalid identity number",
    }
    # The roll arrives: C3's holder is now known, and its tap falls the day before its issue.
    assert invoke_cli(cli_env, "ingest", "--source", "registry", str(registry))[0] == 0
    code, output = invoke_cli(cli_env, "unmatched", "--json")
    reasons = {
        row.get("link_key"): row.get("reason") for row in map(json.loads, output.splitlines())
    }
    assert reasons["C3"] == "card not valid on that day (issued 2025-03-02)"
    assert "relink" not in invoke_cli(cli_env, "unmatched")[1]
    code, output = invoke_cli(cli_env, "relink", "--json")
    assert code == 0 and json.loads(output)["parts_read"] == 0


@st.composite
def _orders(draw: st.DrawFn) -> list[str]:
    steps = draw(st.permutations(["registry_a", "registry_b", "cards_a", "cards_b", "transit",
                                  "medical", "cremation"]))  # fmt: skip
    # Compaction between deliveries: relinking must rewrite clustered parts too.
    at = draw(st.integers(min_value=0, max_value=len(steps)))
    return [*steps[:at], "compact", *steps[at:]]


DELIVERIES = {
    "registry_a": ("registry", HEADER + P1 + P2),
    "registry_b": ("registry", HEADER + P3),
    "cards_a": ("cards", CARDS_HEADER + C1),
    "cards_b": ("cards", CARDS_HEADER + C2 + C3),
    "transit": (
        "transit",
        TRANSIT_HEADER
        + "".join(
            f"X{card}{day},{card},2025-03-{day:02d} 08:00:00,330700,\n"
            for card in ("C1", "C2", "C3", "C9")
            for day in (1, 2, 9)
        ),
    ),
    "medical": (
        "medical",
        MEDICAL_HEADER
        + "".join(
            f"Y{number[-4:]},{number},2025-03-04 09:00:00,H1,outpatient\n"
            for number in ("330702194501011230", "330702195503031213", "110101195001011239")
        ),
    ),
    "cremation": (
        "cremation",
        "record_id,id_number,name,sex,birth_date,died_on,cremated_on\n"
        "Z1,330702195002021228,李四,F,1950-02-02,2025-03-20,2025-03-22\n"
        "Z2,,王五,M,1955-03-03,2025-03-21,2025-03-23\n",
    ),
}
IN_ORDER = ["registry_a", "registry_b", "cards_a", "cards_b", "transit", "medical", "cremation"]


def _deliver(services: Services, folder: Path, steps: list[str]) -> dict[str, object]:
    """Deliver the named files in order; return what every record links to, by person ref."""
    for step in steps:
        if step == "compact":
            compact_store(services.sessions, store=services.store)
            continue
        source, text = DELIVERIES[step]
        ingest_paths(services, source=source, paths=[_write(folder, f"{step}.csv", text)])
    refs = {person_id: ref for ref, person_id in _person_ids(services).items()}
    with session_scope(services.sessions) as session:
        cards = dict(session.execute(select(Card.card_no, Card.person_id)).all())
        deaths = {
            r.record_id: (refs.get(r.person_id), str(r.match))
            for r in session.scalars(select(DeathRecord))
        }
    return {
        source: {record: refs.get(person) for record, person in _linked(services, source).items()}
        for source in ("transit", "medical")
    } | {"cards": {card: refs.get(person) for card, person in cards.items()}, "deaths": deaths}


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_any_delivery_order_links_like_the_roll_and_cards_first(
    backend_name: str,
    services_factory: Callable[[str], Services],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    expected = _deliver(services_factory(backend_name), tmp_path_factory.mktemp("d"), IN_ORDER)
    assert expected["transit"]["XC31"] is None and expected["transit"]["XC32"] == "P3"  # type: ignore[index]

    @settings(
        max_examples=8 if backend_name == "sqlite" else 4,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(order=_orders())
    def check(order: list[str]) -> None:
        services = services_factory(backend_name)
        try:
            assert _deliver(services, tmp_path_factory.mktemp("d"), order) == expected
        finally:
            services.engine.dispose()

    check()


def test_a_relink_that_fails_publishes_nothing(
    fresh: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liveness.ingest.relink as relinking

    ingest_paths(fresh, source="transit", paths=[_transit(tmp_path)])
    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + P1)])

    def fail(*_: object) -> None:
        raise RuntimeError("disk gone")

    # Fails once the rewritten parts are on disk and in the manifest, before the commit.
    monkeypatch.setattr(relinking.os, "utime", fail)
    with pytest.raises(RuntimeError):
        ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", CARDS_HEADER + C1)])
    assert set(_linked(fresh, "transit").values()) == {-1}
    with session_scope(fresh.sessions) as session:
        assert relink_pending(session)
    monkeypatch.undo()
    with session_scope(fresh.sessions) as session:
        assert _relink(session, fresh).traces_linked == 6
    assert set(_linked(fresh, "transit").values()) == {-1, _person_ids(fresh)["P1"]}


def test_a_compacted_part_keeps_what_matched_nobody_in_row_groups_of_its_own(
    fresh: Services, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    ingest_paths(fresh, source="registry", paths=[_write(tmp_path, "r.csv", HEADER + P1)])
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", CARDS_HEADER + C1)])
    ingest_paths(fresh, source="transit", paths=[_transit(tmp_path)])  # C2's taps: nobody
    compact_store(fresh.sessions, store=fresh.store)
    with session_scope(fresh.sessions) as session:
        parts = session.scalars(select(EvidencePart)).all()
    assert {(part.rows, part.unlinked_rows) for part in parts} == {(6, 3)}
    for part in parts:
        metadata = pq.read_metadata(fresh.store.path_of(part))
        groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
        person = metadata.schema.to_arrow_schema().get_field_index("person_id")
        # A relink reads the first row group and skips the rest by their statistics.
        assert [g.num_rows for g in groups] == [3, 3]
        assert groups[0].column(person).statistics.max < 0
        assert groups[1].column(person).statistics.min >= 0


def test_traces_loaded_while_a_relink_is_due_are_tried_again(
    fresh: Services, tmp_path: Path
) -> None:
    # The card came before its holder's roll entry; the roll then arrived without a relink
    # (a crash, or several deliveries in a row): the card register still names no holder.
    ingest_paths(fresh, source="cards", paths=[_write(tmp_path, "c.csv", CARDS_HEADER + C1)])
    registry = _write(tmp_path, "r.csv", HEADER + P1)
    ingest_paths(fresh, source="registry", paths=[registry], relink=False)
    (report,) = ingest_paths(fresh, source="transit", paths=[_transit(tmp_path)])
    assert report.unmatched == 12
    with session_scope(fresh.sessions) as session:
        assert _relink(session, fresh).traces_linked == 6
    linked = _linked(fresh, "transit")
    assert {person for record, person in linked.items() if record.startswith("TC1")} == {
        _person_ids(fresh)["P1"]
    }
