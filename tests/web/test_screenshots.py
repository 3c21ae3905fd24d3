"""A photograph of every page, as each role sees it, on a phone, over a small simulated city.

One screenshot per route and role (not per object): the sign-in page, the error page, the
queue, a task of each kind, a person, the visits, the dashboard, the runs and a run, the
approvals, the orders and an order. They are test artifacts (test-artifacts/screenshots/
pages-*.png) for a person to look at; the test asserts each page answers without a server
error, and holds the inspector's pages (orders, order) to the label and contrast checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from api.app import create_app
from liveness.db import session_scope
from liveness.integrity.service import answer_lead, create_orders
from models import IntegrityLead, LeadStatus, Person, ReviewTask, Role, Run, TaskKind, TaskStatus
from tests.web.browsing import CHECKS, PHONE, SHOTS, serving
from tests.web.test_crawl import CrawledCity, crawled_city, small_city  # noqa: F401

# Scheduling: about 38 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=38)

# The pages whose look this test holds to the checks (the others are photographed only).
CHECKED = ("orders", "order")


@pytest.fixture
def city_server(crawled_city: CrawledCity) -> Iterator[str]:  # noqa: F811
    """Serve the crawled city's app for the browser."""
    with serving(create_app(crawled_city.services)) as base:
        yield base


def _seed_order(city: CrawledCity) -> int:
    """Put two leads of the inspector's region in an order (one answered), as inspectors get them.

    A city this small trips no integrity rule; the order page is photographed all the same,
    with evidence of the shape the rules write (persons, traces with card numbers).
    """
    with session_scope(city.services.sessions) as session:
        person = session.scalars(select(Person).order_by(Person.region_code, Person.id)).first()
        assert person is not None
        who = {
            "person_ref": person.person_ref,
            "id_number": person.id_number,
            "name": person.name,
            "region_code": person.region_code,
            "monthly_amount": 3210.5,
        }
        death = {
            "died_on": "2025-02-01",
            "death_sources": "cremation",
            "traces": 1,
            "listed": [
                {
                    "source": "card_txn",
                    "record_id": "t-1",
                    "day": "2025-03-04",
                    "kind": "pos_pin",
                    "card": "6217001234567890",
                }
            ],
            "persons": [who],
        }
        shared = {"bank_account": "6222020200112233445", "persons": [who, who]}
        leads = [
            IntegrityLead(
                rule=rule, key=f"shot-{rule}", region_code=person.region_code,
                person_refs=[person.person_ref], evidence=evidence,
                amount_at_risk=Decimal("9631.50"), status=LeadStatus.OPEN, policy_version="shot",
                found_on=dt.date(2025, 5, 1),
            )
            for rule, evidence in (("activity_after_death", death), ("shared_bank_account", shared))
        ]  # fmt: skip
        session.add_all(leads)
        session.flush()
        (order,) = create_orders(
            session, due_on=dt.date(2099, 1, 1), issued_by="operator", regions=[person.region_code]
        )
        answer_lead(
            session, lead_id=leads[1].id, verdict="explained", amount_to_recover=Decimal(0),
            answered_by="inspector-x", note="同户夫妻共用账户",
        )  # fmt: skip
        return order.id


def _objects(city: CrawledCity) -> dict[str, str]:
    """Return one object of each route: a task per kind, a person, a run, an order."""
    found: dict[str, str] = {}
    with session_scope(city.services.sessions) as session:
        for kind in TaskKind:
            # The worker's grids first: a kind only other grids have is the supervisors' to see.
            for scope, grids in (("", city.grids[:2]), ("-other", city.grids)):
                task = session.scalars(
                    select(ReviewTask).where(
                        ReviewTask.kind == kind, ReviewTask.grid_code.in_(grids),
                        ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]),
                    ).order_by(ReviewTask.id).limit(1)
                ).first()  # fmt: skip
                if task is not None:
                    found[f"task-{kind}{scope}"] = f"/web/tasks/{task.id}"
                    ref = session.scalar(
                        select(Person.person_ref).where(Person.id == task.person_id)
                    )
                    found.setdefault("person", f"/web/persons/{ref}")
                    break
        run = session.scalars(select(Run.id).order_by(Run.id.desc())).first()
        found["run"] = f"/web/runs/{run}"
        grid = city.grids[0]
        region = session.scalar(select(Person.region_code).where(Person.grid_code == grid))
        found["grid"] = f"/web/grids/{grid}"
        found["region"] = f"/web/regions/{region}"
        found["sheet"] = f"/web/queue/sheet?grid={grid}"
    found["order"] = f"/web/orders/{_seed_order(city)}"
    return found


def _routes(role: str, objects: dict[str, str]) -> dict[str, str]:
    """Return the pages a role works with, by name."""
    tasks = {name: url for name, url in objects.items() if name.startswith("task-")}
    own = {name: url for name, url in tasks.items() if not name.endswith("-other")}
    worker = {
        "queue": "/web/queue", **own, "person": objects["person"], "visits": "/web/visits",
        "grid": objects["grid"], "sheet": objects["sheet"],
    }  # fmt: skip
    supervisor = {
        "dashboard": "/web/dashboard", "runs": "/web/runs", "run": objects["run"],
        "approvals": "/web/approvals", "orders": "/web/orders", "person": objects["person"],
        "queue": "/web/queue", "order": objects["order"], **tasks, "region": objects["region"],
        "grid": objects["grid"], "sheet": objects["sheet"],
        "suspensions-next": "/web/suspensions/next",
    }  # fmt: skip
    auditing = {**supervisor, "audit": "/web/audit"}
    inspector = {"orders": "/web/orders", "order": objects["order"]}
    return {
        Role.GRID_WORKER: worker, Role.OPERATOR: supervisor, Role.ADMIN: auditing,
        Role.AUDITOR: auditing, Role.INSPECTOR: inspector,
    }[Role(role)]  # fmt: skip


def _sign_in(page: Any, base: str, token: str) -> None:
    """Sign in through the token form."""
    page.goto(f"{base}/web/sign-in")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("button[type=submit] >> nth=-1")


def test_every_page_is_photographed_as_each_role_on_a_phone(
    crawled_city: CrawledCity,  # noqa: F811
    city_server: str,
    browser: Any,
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    objects = _objects(crawled_city)
    assert {"task-home_visit", "person", "run", "order"} <= set(objects), objects
    context = browser.new_context(viewport=PHONE, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{city_server}/web/sign-in")
    page.screenshot(path=str(SHOTS / "pages-sign-in.png"), full_page=True)
    problems: dict[str, list[str]] = {}
    for role, token in crawled_city.tokens.items():
        _sign_in(page, city_server, token)
        for name, url in _routes(role, objects).items():
            answer = page.goto(f"{city_server}{url}")
            assert answer is not None and answer.status < 500, (role, url)
            assert answer.headers["content-type"].startswith("text/html"), (role, url)
            page.screenshot(path=str(SHOTS / f"pages-{role}-{name}.png"), full_page=True)
            if name in CHECKED:
                problems[f"{role} {name}"] = page.evaluate(CHECKS)
        if role == Role.GRID_WORKER:
            missing = page.goto(f"{city_server}/web/tasks/999999999")
            assert missing is not None and missing.status == 404
            page.screenshot(path=str(SHOTS / "pages-error.png"), full_page=True)
        context.clear_cookies()
    context.close()
    assert all(found == [] for found in problems.values()), problems
