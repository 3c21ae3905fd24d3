"""The review queue's order comes from the certification policy, not from code."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from models import Assessment, Benefit, Person, ReviewTask, TaskKind
from tests.liveness.conftest import REPO
from tests.liveness.ingest.test_ingest import CARDS, REGISTRY

AS_OF = dt.date(2025, 6, 15)
# P2's number, another name: a death review, never a suspension.
CREMATION = (
    "record_id,id_number,name,sex,birth_date,died_on,cremated_on\n"
    "D1,330702195002021228,赵六,F,1950-02-02,2025-06-01,2025-06-03\n"
)


def policy_copy(folder: Path, changes: dict[str, str]) -> Path:
    """Copy the shipped policy into `folder`, with lines of certification.toml replaced."""
    config = folder / "config"
    shutil.copytree(REPO / "config", config)
    path = config / "certification.toml"
    text = path.read_text(encoding="utf-8")
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return config


def _world(url: str, config: Path, folder: Path) -> Services:
    """Return services on `config` with the roll, the cards and a mismatched death record."""
    folder.mkdir()
    services = Services(Settings(database_url=url, evidence_dir=folder / "evidence",
                                 config_dir=config))  # fmt: skip
    upgrade(services.engine)
    for source, text, encoding in (
        ("registry", REGISTRY, "utf-8"), ("cards", CARDS, "utf-8"),
        ("cremation", CREMATION, "gb18030"),
    ):  # fmt: skip
        path = folder / f"{source}.csv"
        path.write_bytes(text.encode(encoding))
        (report,) = ingest_paths(services, source=source, paths=[path])
        assert report.error is None and report.quarantined == 0, report
    run = execute_run(services, as_of=AS_OF)
    assert run.status == "published", run.report.get("guard")
    return services


def _tasks(services: Services) -> dict[tuple[str, str], tuple[float, float]]:
    """Return per (person, task kind) the task's priority and (1 - score) x monthly amount."""
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(Person.person_ref, ReviewTask.kind, ReviewTask.priority, Assessment.score,
                   Benefit.monthly_amount)
            .join(Person, Person.id == ReviewTask.person_id)
            .join(Assessment, (Assessment.person_id == Person.id)
                  & (Assessment.run_id == ReviewTask.opened_run_id))
            .join(Benefit, Benefit.person_id == Person.id)
        ).all()  # fmt: skip
    return {
        (ref, str(kind)): (priority, (1.0 - score) * float(amount))
        for ref, kind, priority, score, amount in rows
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_priorities_follow_the_policy(
    backend: str, database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    shipped = _tasks(_world(database_url_factory(backend), REPO / "config", tmp_path / "a"))
    changed = policy_copy(
        tmp_path, {"per_yuan_at_risk = 1.0": "per_yuan_at_risk = 2.5",
                   "death_review = 1000000.0": "death_review = 5000.0"},
    )  # fmt: skip
    scaled = _tasks(_world(database_url_factory(backend), changed, tmp_path / "b"))

    death = ("P2", str(TaskKind.DEATH_REVIEW))
    renewals = [key for key in shipped if key != death]
    assert death in shipped and renewals and set(scaled) == set(shipped)
    # The shipped policy gives today's order: (1 - score) x monthly amount, death reviews first.
    assert shipped[death][0] == 1_000_000.0
    for key in renewals:
        priority, at_risk = shipped[key]
        assert priority == round(at_risk, 2) and priority > 0
    # Another policy scales the renewals' priorities and sets the death review's.
    assert scaled[death][0] == 5000.0
    for key in renewals:
        assert scaled[key][0] == round(shipped[key][1] * 2.5, 2)
