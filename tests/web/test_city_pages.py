"""The pages over a simulated city after three monthly runs: real charts, reasons and traces."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api.app import create_app
from liveness.access import create_client
from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import Person, ReviewTask, Role, TaskStatus
from tests.liveness.conftest import CITY_DAYS, CITY_START
from tests.web.browsing import (
    DESKTOP,
    PHONE,
    check_page,
    serving,
    signed_in_page,
)

# Scheduling: about 60 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=60)

LAST = CITY_START + dt.timedelta(days=CITY_DAYS - 1)


@pytest.fixture
def city_app(city: Path, services_factory: Callable[[str], Services]) -> dict[str, Any]:
    """Ingest the simulated city, run three month ends, and create a supervisor and a worker."""
    services = services_factory("sqlite")  # the pages are backend-neutral: tests/web covers both
    for source in INGEST_ORDER:
        ingest_paths(services, source=source, paths=[city / source])
    for as_of in (LAST - dt.timedelta(days=61), LAST - dt.timedelta(days=30), LAST):
        with session_scope(services.sessions) as session:
            certify(session, as_of=as_of, store=services.store, policies=services.policies)
    with session_scope(services.sessions) as session:
        grid = session.execute(
            select(ReviewTask.grid_code)
            .where(ReviewTask.status == TaskStatus.OPEN)
            .group_by(ReviewTask.grid_code)
            .order_by(func.count().desc())
            .limit(1)
        ).scalar_one()
        tokens = {
            "operator": create_client(session, name="supervisor", role=Role.OPERATOR).token,
            "grid_worker": create_client(
                session, name="worker", role=Role.GRID_WORKER, grids=[grid]
            ).token,
        }
        # Someone with many traces, for the timeline.
        person = session.scalars(select(Person.person_ref).order_by(Person.id).limit(1)).one()
    return {"app": create_app(services), "tokens": tokens, "grid": grid, "person": person}


def test_a_supervisor_reads_the_city_and_a_worker_their_grid(
    city_app: dict[str, Any], browser: Any
) -> None:
    with serving(city_app["app"]) as base:
        desk, page = signed_in_page(browser, base, city_app["tokens"]["operator"], viewport=DESKTOP)
        assert page.locator('[data-figure="on_roll"]').inner_text() == "1,500"
        # Three runs in the trend's table, and one row per region in the regions' table.
        trend_rows = page.locator("#tr-h ~ details tbody tr")
        assert trend_rows.count() == 3
        assert page.locator("#rg-h ~ details tbody tr").count() >= 2
        check_page(page, "city-01-dashboard")
        page.goto(f"{base}/web/persons/{city_app['person']}")
        # The timeline shows the person's traces as ticks, and the level is explained.
        assert page.locator("#tl-h ~ svg rect").count() > 0
        assert page.locator("#ex-h ~ p.reasons").inner_text().strip()
        check_page(page, "city-02-person")
        page.goto(f"{base}/web/runs")
        check_page(page, "city-03-runs")
        first_run = page.locator("tbody tr th a").first
        with page.expect_navigation():
            first_run.click()
        check_page(page, "city-04-run-report")
        desk.close()

        phone, page = signed_in_page(
            browser, base, city_app["tokens"]["grid_worker"], viewport=PHONE
        )
        tasks = page.locator("[data-task]")
        assert tasks.count() > 0
        # Reasons in plain words, not the stored keys.
        reasons = page.locator("[data-task] .reasons").first.inner_text()
        assert re.search(r"[\u4e00-\u9fff]", reasons) and "rule" not in reasons
        check_page(page, "city-05-queue")
        with page.expect_navigation():
            tasks.first.locator("a.card-link").click()
        check_page(page, "city-06-task")
        phone.close()
