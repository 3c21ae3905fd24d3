"""The walking skeleton end to end: simulate, ingest every source, certify, check the truth."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.entry.demo import score_against_truth, suspension_list
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import (
    Assessment,
    Delivery,
    ListEntry,
    ReviewTask,
    Run,
    RunStatus,
    TaskKind,
    assessments_as_of,
)
from tests.liveness.conftest import CITY_DAYS, CITY_START

# Scheduling: about 6 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=6)

AS_OF = CITY_START + dt.timedelta(days=CITY_DAYS - 1)


def _ingest_city(services: Services, city: Path) -> list:  # type: ignore[type-arg]
    reports = []
    for source in INGEST_ORDER:
        reports += ingest_paths(services, source=source, paths=[city / source])
    return reports


def _certify_city(
    backend: str, city: Path, services_factory: Callable[[str], Services]
) -> tuple[Services, Run, list]:  # type: ignore[type-arg]
    services = services_factory(backend)
    reports = _ingest_city(services, city)
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
    return services, run, reports


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def certified_city(
    request: pytest.FixtureRequest, city: Path, services_factory: Callable[[str], Services]
) -> tuple[Services, Run, list]:  # type: ignore[type-arg]
    """The city ingested and certified once per backend, for the tests that only read it."""
    return _certify_city(request.param, city, services_factory)


@pytest.fixture(params=["sqlite", "postgresql"])
def certified_city_to_change(
    request: pytest.FixtureRequest, city: Path, services_factory: Callable[[str], Services]
) -> tuple[Services, Run, list]:  # type: ignore[type-arg]
    """The city ingested and certified afresh, for a test that runs or ingests again."""
    return _certify_city(request.param, city, services_factory)


def test_every_row_is_accounted_for(certified_city) -> None:  # type: ignore[no-untyped-def]
    _, _, reports = certified_city
    assert not [r for r in reports if r.error]
    for report in reports:
        assert report.loaded + report.redelivered + report.quarantined == report.rows_read, report
    assert sum(r.quarantined for r in reports) > 0
    assert sum(r.redelivered for r in reports) > 0
    assert any(r.status == "duplicate" for r in reports)


def test_run_grades_everyone_and_publishes(certified_city, city: Path) -> None:  # type: ignore[no-untyped-def]
    services, run, _ = certified_city
    truth = pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False)
    assert run.status == RunStatus.PUBLISHED
    assert run.report["persons"] == len(truth)
    assert sum(run.report["levels"].values()) == len(truth)
    with session_scope(services.sessions) as session:
        assessed = session.scalar(select(func.count()).select_from(assessments_as_of(run.id)))
        tasks = dict(
            session.execute(select(ReviewTask.kind, func.count()).group_by(ReviewTask.kind)).all()
        )
    assert assessed == len(truth)
    # Reviews open only for people whose certification is up for renewal; living elsewhere,
    # a weak person is offered a face verification, since nobody can visit them.
    opened = run.report["tasks_opened"]
    assert tasks.get(TaskKind.FACE_VERIFICATION, 0) == opened["face_verification"] > 0
    assert tasks.get(TaskKind.HOME_VISIT, 0) == opened["home_visit"] > 0
    levels = run.report["levels"]
    assert sum(tasks.values()) - opened["death_review"] <= levels["medium"] + levels["weak"]
    # The report names every policy it applied, the sources' declaration (and with it their
    # independence groups, which grading counts) by the SHA-256 of its file.
    settings = services.settings
    assert run.report["policy_version"] == _version(settings.scoring_policy_path)
    assert run.report["sources_version"] == _version(settings.sources_config_path)


def _version(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_a_silent_source_is_reported_degraded(certified_city, city: Path) -> None:  # type: ignore[no-untyped-def]
    _, run, _ = certified_city
    anomalies = json.loads((city / "anomalies.json").read_text())
    assert run.report["degraded_sources"]["card_txn"] == anomalies["silent"]["days"]


def test_deaths_with_a_record_are_suspended_and_nobody_alive_is(certified_city, city: Path) -> None:  # type: ignore[no-untyped-def]
    services, run, _ = certified_city
    truth = pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False).replace({"": None})
    entries = suspension_list(services, run.id)
    scored = score_against_truth(truth, entries, AS_OF)
    assert scored["wrongful"] == []
    recorded = {
        record: counts
        for record, counts in scored["by_record"].items()
        if record in ("cremation", "both", "hospital_only")
    }
    caught = sum(c for c, _ in recorded.values())
    total = sum(t for _, t in recorded.values())
    assert total > 0
    # Records that arrive before the as-of date suspend; a cremation days after a death at the
    # very end of the period may not have arrived yet.
    assert caught >= total - 2
    # A death with no record in the period is suspended only on the civil registry's notice.
    unrecorded = truth[truth["death_record"].eq("none") & truth["registry_notice"].ne("true")]
    suspended = set(entries.loc[entries["action"] == "suspend", "person_ref"])
    assert not set(unrecorded["person_ref"]) & suspended
    assert scored["by_record"].get("none", (0, 0))[0] <= int(
        (truth["death_record"].eq("none") & truth["registry_notice"].eq("true")).sum()
    )


def test_suspensions_carry_date_and_overpayment(certified_city, city: Path) -> None:  # type: ignore[no-untyped-def]
    services, run, _ = certified_city
    truth = pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False).set_index(
        "person_ref"
    )
    entries = suspension_list(services, run.id)
    assert len(entries) > 0
    for entry in entries.itertuples():
        died_on = dt.date.fromisoformat(truth.loc[entry.person_ref, "died_on"])
        assert entry.effective_on >= died_on + dt.timedelta(days=1)
        months = (AS_OF.year * 12 + AS_OF.month) - (died_on.year * 12 + died_on.month)
        monthly = float(truth.loc[entry.person_ref, "monthly_amount"])
        # The overpayment is the monthly amount times whole months after the month of death.
        assert float(entry.amount) == pytest.approx(monthly * months, abs=0.01 * (months + 1))
    assert list(entries["seq"]) == sorted(entries["seq"])


def test_wrongly_reported_death_opens_a_review(certified_city, city: Path) -> None:  # type: ignore[no-untyped-def]
    services, run, _ = certified_city
    truth = pd.read_csv(city / "truth.csv", dtype=str, keep_default_na=False)
    wrongly = set(truth.loc[truth["wrongly_reported_dead"] == "true", "person_ref"])
    entries = suspension_list(services, run.id)
    assert not wrongly & set(entries["person_ref"])
    if wrongly:
        assert run.report["tasks_opened"]["death_review"] >= 1


def test_reingesting_everything_changes_nothing(certified_city_to_change, city: Path) -> None:  # type: ignore[no-untyped-def]
    services, run, _ = certified_city_to_change
    with session_scope(services.sessions) as session:
        before = session.scalar(select(func.count()).select_from(Delivery))
    reports = _ingest_city(services, city)
    # A file without data rows is `empty` every time it comes, never a duplicate of another.
    assert {r.status for r in reports} <= {"duplicate", "empty"}
    assert all(r.rows_read == 0 for r in reports if r.status == "empty")
    assert sum(r.loaded for r in reports) == 0
    with session_scope(services.sessions) as session:
        after = session.scalar(select(func.count()).select_from(Delivery))
        second = certify(session, as_of=AS_OF, store=services.store, policies=services.policies)
        # The dead are already suspended: a second run as of the same date adds no entry.
        new_entries = session.scalar(
            select(func.count()).select_from(ListEntry).where(ListEntry.run_id == second.id)
        )
    assert after == before + len(reports)
    assert new_entries == 0
    assert second.report["levels"] == run.report["levels"]


def test_the_next_night_stores_only_the_assessments_that_changed(
    certified_city_to_change, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A night with nothing new stores few rows, and what stands equals what it graded."""
    import liveness.certification.run as certification_run

    services, run, _ = certified_city_to_change
    graded: dict[int, tuple[str, str]] = {}
    store = certification_run.store_assessments

    def spy(session, *, assessed, **kwargs):  # type: ignore[no-untyped-def]
        graded.update(
            (int(p), (str(level), str(rule)))
            for p, level, rule in zip(
                assessed["person_id"], assessed["level"], assessed["rule"], strict=True
            )
        )
        return store(session, assessed=assessed, **kwargs)

    monkeypatch.setattr(certification_run, "store_assessments", spy)
    with session_scope(services.sessions) as session:
        first_rows = session.scalar(select(func.count()).select_from(assessments_as_of(run.id)))
        night = certify(
            session, as_of=AS_OF + dt.timedelta(days=1), store=services.store,
            policies=services.policies,
        )  # fmt: skip
        standing = assessments_as_of(night.id)
        stood = {
            int(p): (str(level), rule)
            for p, level, rule in session.execute(
                select(standing.person_id, standing.level, standing.rule)
            )
        }
        written = session.scalar(
            select(func.count()).select_from(Assessment).where(Assessment.run_id == night.id)
        )
    counts = night.report["assessments"]
    assert stood == graded and len(graded) == first_rows
    assert counts["stored"] + counts["confirmed"] == len(graded)
    assert written == counts["stored"] + counts["departed"]
    # A day later, only the few whose sources aged out of a window (or whose level moved).
    assert counts["stored"] < len(graded) / 5, counts
