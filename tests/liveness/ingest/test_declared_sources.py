"""A data scenario declared in configuration alone loads, links, scores and explains itself."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.ingest.queries import unmatched_evidence
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.scoring import render_reasons
from liveness.services import Services
from liveness.settings import Settings
from liveness.sources import source_labels
from liveness.views.person import person_view
from models import Person, assessments_as_of
from tests.connectors.test_declare import CANTEEN
from tests.liveness.conftest import REPO
from tests.liveness.ingest.test_relink import CARDS_HEADER, HEADER, MEDICAL_HEADER, P1, P2, P3

# The canteen (by card, else by name and birth date) and a check-up in the medical group.
DECLARED = CANTEEN.split("[validation.ceilings]")[0]
WEIGHTS = "\n[weights.canteen]\nmeal = 0.5\nevent = 1.0\n\n[weights.checkup]\ncheck = 1.0\n"
LAGS = "canteen = 3\ncheckup = 40\n"
AS_OF = dt.date(2025, 6, 15)
CARDS = CARDS_HEADER + (
    "C1,citizen,330702194501011230,2020-01-01,\nC2,citizen,330702195002021228,2020-01-01,\n"
)
CANTEEN = "record_id,card_no,name,birth_date,served_at,meal\n" + "".join(
    [f"K2{day},C2,,,2025-05-{day:02d} 11:30:00,lunch\n" for day in (5, 12, 19)]
    # P3 has no card: the canteen signs them in by name and birth date.
    + ["K31,,王五,1955-03-03,2025-05-06 09:00:00,event\n"]
    + ["K99,,赵六,1940-01-01,2025-05-07 09:00:00,event\n"]  # nobody on the roll
    + ["K98,C9,,,2025-05-07 11:30:00,lunch\n"]  # a card nobody holds
)
CHECKUP = (
    "record_id,id_number,checked_on\n"
    "H1,330702194501011230,2025-04-20\nH2,330702195002021228,2025-04-21\n"
)
MEDICAL = MEDICAL_HEADER + "".join(
    f"M{person}{day},{number},2025-05-{day:02d} 09:00:00,H1,outpatient\n"
    for person, number in (("1", "330702194501011230"), ("2", "330702195002021228"))
    for day in (5, 20)
)


def declared_folder(tmp_path: Path) -> Path:
    """Copy the shipped policy and declare two sources in its TOML files, nothing else."""
    folder = tmp_path / "config"
    shutil.copytree(REPO / "config", folder)
    for name, text in (
        ("sources.toml", DECLARED),
        ("scoring.toml", WEIGHTS),
        ("health.toml", LAGS),
    ):
        with (folder / name).open("a", encoding="utf-8") as file:
            file.write(text)
    return folder


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest,
    database_url_factory: Callable[[str], str],
    tmp_path: Path,
) -> Services:
    settings = Settings(
        database_url=database_url_factory(request.param),
        evidence_dir=tmp_path / "evidence",
        config_dir=declared_folder(tmp_path),
    )
    services = Services(settings)
    upgrade(services.engine)
    return services


def _ingest(services: Services, tmp_path: Path, source: str, text: str) -> None:
    path = tmp_path / f"{source}.csv"
    path.write_text(text, encoding="utf-8")
    (report,) = ingest_paths(services, source=source, paths=[path])
    assert report.error is None, report.error


def _linked(services: Services, source: str) -> dict[str, tuple[str | None, str]]:
    with session_scope(services.sessions) as session:
        refs = dict(session.execute(select(Person.id, Person.person_ref)).all())
        rows = services.store.read_table(
            session, source=source, columns=["record_id", "person_id", "link", "kind"]
        ).to_pylist()
    return {r["record_id"]: (refs.get(r["person_id"]), r["link"], r["kind"]) for r in rows}


def _graded(session: Session, run_id: int) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """Return each person's level, rule and reasons at a run, by person_ref."""
    standing = assessments_as_of(run_id)
    return {
        ref: (str(level), rule, reasons)
        for ref, level, rule, reasons in session.execute(
            select(Person.person_ref, standing.level, standing.rule, standing.reasons).join(
                standing, standing.person_id == Person.id
            )
        ).all()
    }


def test_a_declared_scenario_loads_links_and_scores_with_no_code(
    services: Services, tmp_path: Path
) -> None:
    # The canteen delivers before the roll and the cards exist: it links once they come.
    _ingest(services, tmp_path, "canteen", CANTEEN)
    assert {person for person, _, _ in _linked(services, "canteen").values()} == {None}
    _ingest(services, tmp_path, "registry", HEADER + P1 + P2 + P3)
    _ingest(services, tmp_path, "cards", CARDS)
    _ingest(services, tmp_path, "medical", MEDICAL)
    _ingest(services, tmp_path, "checkup", CHECKUP)

    canteen = _linked(services, "canteen")
    assert canteen["K25"] == ("P2", "card", "meal")
    assert canteen["K31"] == ("P3", "name_birth_date", "event")
    assert canteen["K99"][:2] == canteen["K98"][:2] == (None, "none")
    assert _linked(services, "checkup")["H1"] == ("P1", "id_number", "check")
    with session_scope(services.sessions) as session:
        unmatched = unmatched_evidence(
            session, store=services.store, sources=("canteen",), links=services.trace_links
        )
    reasons = dict(zip(unmatched["link_key"], unmatched["reason"], strict=True))
    assert reasons == {
        "赵六|1940-01-01": "nobody, or several persons, on the roll with this name and birth date",
        "C9": "no card with this number",
    }

    with session_scope(services.sessions) as session:
        run = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
        assert run.report["trace_sources"][-2:] == ["canteen", "checkup"]
        # The shipped long-term care is in the medical group already.
        assert run.report["independence_groups"]["medical"] == [
            "medical", "ltc", "remote_medical", "checkup",
        ]  # fmt: skip
        graded = _graded(session, run.id)
    # P1: medical and the check-up agree, but they are one group: one source, medium.
    assert graded["P1"][:2] == ("medium", "sources_medium")
    # P2: medical and the canteen (1.5 of weight in 90 days) are independent: strong.
    assert graded["P2"][:2] == ("strong", "sources_strong")
    # P3: one canteen event signed in by name: one source.
    assert graded["P3"][:2] == ("medium", "sources_medium")
    labels = source_labels(services.traces, "zh")
    assert render_reasons(graded["P3"][2], lang="zh", labels=labels).startswith(
        "中：近90天有1个来源（老年食堂：最近2025-05-06）"
    )
    english = render_reasons(
        graded["P2"][2], lang="en", labels=source_labels(services.traces, "en")
    )
    assert "elderly canteen: last 2025-05-19" in english

    with session_scope(services.sessions) as session:
        view = person_view(
            session, store=services.store, person_ref="P2", today=AS_OF, traces=services.traces
        )
    assert [row.kind for row in view.timeline["canteen"]] == ["meal"] * 3
    assert view.source_labels["canteen"] == {"zh": "老年食堂", "en": "elderly canteen"}


def test_the_shipped_long_term_care_certifies_a_nursing_home_resident(
    services: Services, tmp_path: Path
) -> None:
    # P3 lives in a nursing home: its daily lines since 1 April, nothing else. Long-term care
    # shares the medical group, but the institution's own records make them strong alone.
    _ingest(services, tmp_path, "registry", HEADER + P1 + P2 + P3)
    days = [AS_OF - dt.timedelta(days=ago) for ago in range(1, 76)]
    _ingest(services, tmp_path, "ltc", "record_id,id_number,cared_on,service,institution_code\n"
            + "".join(f"L{day:%m%d},330702195503031213,{day},nursing_home_day,N001\n"
                      for day in days))  # fmt: skip
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
        level, rule, reasons = _graded(session, run.id)["P3"]
    assert (level, rule, reasons["institution"]) == ("strong", "institution", ["ltc"])
    assert render_reasons(reasons, lang="en") == (
        "strong: in the care of an institution, its records in the last 90 days "
        "(long-term care: last 2025-06-14)"
    )


FAMILY_DOCTOR = "record_id,id_number,visited_at,visit_type,doctor_id,institution_code\n"
REMOTE = "record_id,id_number,settled_at,visit_type,province_code,institution_code\n"


def test_the_shipped_family_doctor_and_care_out_of_the_province_grade_with_no_code(
    services: Services, tmp_path: Path
) -> None:
    _ingest(services, tmp_path, "registry", HEADER + P1 + P2 + P3)
    # P1 is bedridden: a relative collects medicine, and the family doctor calls at home.
    _ingest(services, tmp_path, "medical", MEDICAL_HEADER + "".join(
        f"M1{day},330702194501011230,2025-05-{day:02d} 10:00:00,H1,pharmacy\n" for day in (5, 20)
    ))  # fmt: skip
    _ingest(services, tmp_path, "family_doctor", FAMILY_DOCTOR + "".join(
        f"F1{month},330702194501011230,2025-{month:02d}-12 09:30:00,home_visit,D0001,S001\n"
        for month in (4, 5)
    )  # P3's doctor only calls: a call is no evidence.
        + "".join(f"F3{month},330702195503031213,2025-{month:02d}-02 15:00:00,phone_follow_up,"
                  "D0002,S001\n" for month in (3, 4, 5)))  # fmt: skip
    # P2 lives in Shanghai and sees a doctor there; P3's stay there ended (no outcome).
    _ingest(services, tmp_path, "remote_medical", REMOTE
            + "YD1,330702195002021228,2025-05-03 09:00:00,outpatient,310000,H31000000001\n"
            + "YD2,330702195002021228,2025-05-17 16:00:00,pharmacy,310000,P31000000002\n"
            + "YD3,330702195503031213,2025-05-20 11:00:00,inpatient_discharge,310000,"
              "H31000000003\n")  # fmt: skip
    assert _linked(services, "remote_medical")["YD1"] == ("P2", "id_number", "outpatient")
    assert _linked(services, "family_doctor")["F14"] == ("P1", "id_number", "home_visit")
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
        groups = run.report["independence_groups"]
        graded = _graded(session, run.id)
    assert groups["health_centre"] == ["health_check", "vaccination", "family_doctor"]
    # P1: the medical insurance and the family doctor are two independent groups: strong.
    assert graded["P1"][:2] == ("strong", "sources_strong")
    assert "family doctor follow-ups: last 2025-05-12" in render_reasons(
        graded["P1"][2], lang="en", labels=source_labels(services.traces, "en")
    )
    # P2: a visit far away is medical care, one source: medium.
    assert graded["P2"][:2] == ("medium", "sources_medium")
    assert render_reasons(
        graded["P2"][2], lang="zh", labels=source_labels(services.traces, "zh")
    ).startswith("中：近90天有1个来源（异地就医结算：最近2025-05-17）")
    # P3: calls and the end of a stay weigh nothing; no source agrees.
    assert graded["P3"][:2] == ("weak", "no_evidence")
