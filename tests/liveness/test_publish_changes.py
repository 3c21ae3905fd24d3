"""Storing only the assessments that changed publishes what storing every one did, run after run.

The old path is the same engine told to store everyone every night (a refresh period of one
day makes every stored assessment stale by the next run); the new one stores what changed.
On a simulated city over several runs, both must give the same levels and rules as of every
run, the same list entries, certifications, reviews and notices; the new one writes far fewer
assessment rows.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from models import (
    Assessment,
    Certification,
    ListEntry,
    Notice,
    Person,
    ReviewTask,
    assessments_as_of,
)
from tests.liveness.conftest import CITY_START, REPO

# Scheduling: about 35 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=35)

# Runs move forward through the simulated city's days, nights apart and weeks apart.
RUN_DAYS = (100, 101, 102, 115, 130, 131, 149)


def _services(url: str, evidence: Path, config: Path) -> Services:
    services = Services(Settings(database_url=url, evidence_dir=evidence, config_dir=config))
    upgrade(services.engine)
    return services


def _store_everyone_config(folder: Path) -> Path:
    """Copy the shipped policy, told to store every assessment every night (the old path)."""
    config = folder / "config"
    shutil.copytree(REPO / "config", config)
    path = config / "certification.toml"
    text, count = re.subn(
        r"(?m)^assessment_refresh_days = \d+$", "assessment_refresh_days = 1", path.read_text()
    )
    assert count == 1
    path.write_text(text)
    return config


def _published(services: Services, run_id: int) -> dict[str, Any]:
    """Return what a run published, keyed by person reference, comparable across databases."""
    with session_scope(services.sessions) as session:
        refs = dict(session.execute(select(Person.id, Person.person_ref)).all())
        standing = assessments_as_of(run_id)
        return {
            "levels": sorted(
                (refs[p], str(level), rule)
                for p, level, rule in session.execute(
                    select(standing.person_id, standing.level, standing.rule)
                )
            ),
            "entries": sorted(
                (refs[e.person_id], str(e.action), str(e.reason), str(e.amount), str(e.status))
                for e in session.scalars(select(ListEntry))
            ),
            "certifications": sorted(
                (refs[c.person_id], str(c.source), c.certified_on, c.valid_until)
                for c in session.scalars(select(Certification))
            ),
            "tasks": sorted(
                (refs[t.person_id], str(t.kind), str(t.status), t.opened_on, t.due_on)
                for t in session.scalars(select(ReviewTask))
            ),
            "notices": session.scalar(select(func.count()).select_from(Notice)),
            "rows": session.scalar(
                select(func.count()).select_from(Assessment).where(Assessment.run_id == run_id)
            ),
        }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_storing_what_changed_publishes_what_storing_everyone_did(
    backend: str, city: Path, database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    old = _services(
        database_url_factory(backend), tmp_path / "old-evidence", _store_everyone_config(tmp_path)
    )
    new = _services(database_url_factory(backend), tmp_path / "new-evidence", REPO / "config")
    for services in (old, new):
        for source in INGEST_ORDER:
            for report in ingest_paths(services, source=source, paths=[city / source]):
                assert report.error is None
    rows = {"old": 0, "new": 0}
    for day in RUN_DAYS:
        as_of = CITY_START + dt.timedelta(days=day)
        runs = {name: execute_run(s, as_of=as_of) for name, s in (("old", old), ("new", new))}
        assert {r.status for r in runs.values()} == {"published"}
        before = _published(old, runs["old"].id)
        after = _published(new, runs["new"].id)
        persons = len(before["levels"])
        # The old path stores everyone every run; the new, what changed.
        assert before.pop("rows") == persons
        rows["old"] += persons
        rows["new"] += after.pop("rows")
        assert after == before, f"the runs as of {as_of} differ"
    # After the first, the nights store a small share of what storing everyone stores.
    first = len(before["levels"])
    assert rows["new"] - first < (rows["old"] - first) / 4, rows
    for services in (old, new):
        services.engine.dispose()
