"""A crawl of the pages as every role, over a simulated city after several monthly runs.

Each role signs in and opens every page its navigation reaches, every queue, and every
task, person, run and order linked from them (breadth first, GET only, same-origin /web
links): no answer may be a server error, and every answer is a page, never raw JSON.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
from fastapi.testclient import TestClient
from jinja2 import nodes
from sqlalchemy import func, select

from api.app import create_app
from api.web.pages import TEMPLATES
from liveness.access import create_client
from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.entry.cli.integrity import integrity_policy
from liveness.evidence.compaction import compact_store
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.integrity.service import create_orders, refresh_leads
from liveness.services import Services
from liveness.simulate import simulate_city
from models import IntegrityLead, ListEntry, Person, ReviewTask, Role, TaskStatus
from tests.web.conftest import sign_in

# Scheduling: about 20 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=20)

START = dt.date(2025, 1, 1)
DAYS = 150
LAST = START + dt.timedelta(days=DAYS - 1)
# Small enough to crawl on both backends; four month ends give every kind of task,
# suspensions and reinstatements.
PERSONS = 200
MONTH_ENDS = tuple(LAST - dt.timedelta(days=d) for d in (91, 61, 30, 0))
HREF = re.compile(r'href="([^"]+)"')


@pytest.fixture(scope="module")
def small_city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulate a small city once for the crawl."""
    out = tmp_path_factory.mktemp("crawl-city")
    simulate_city(persons=PERSONS, start=START, days=DAYS, seed=11, out=out)
    return out


@dataclass
class CrawledCity:
    """The app over the city, a token per role, and the grids with open tasks."""

    services: Services
    tokens: dict[str, str]
    grids: list[str]


@pytest.fixture(params=["sqlite", "postgresql"])
def crawled_city(
    request: pytest.FixtureRequest,
    small_city: Path,
    services_factory: Callable[[str], Services],
) -> Iterator[CrawledCity]:
    """Load the city on a backend, run the month ends, find leads, issue orders, add clients."""
    services = services_factory(request.param)
    for source in INGEST_ORDER:
        ingest_paths(services, source=source, paths=[small_city / source])
    # As the nightly job keeps it: one part per source and month, clustered by person.
    compact_store(services.sessions, store=services.store)
    for as_of in MONTH_ENDS:
        with session_scope(services.sessions) as session:
            certify(session, as_of=as_of, store=services.store, policies=services.policies)
    with session_scope(services.sessions) as session:
        refresh_leads(
            session,
            store=services.store,
            policy=integrity_policy(services),
            as_of=LAST,
            today=LAST,
        )
        create_orders(session, due_on=LAST + dt.timedelta(days=30), issued_by="crawl")
        grids = sorted(
            session.scalars(
                select(ReviewTask.grid_code)
                .where(ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]))
                .distinct()
            )
        )
        assert grids, "the city has no open review tasks to crawl"
        regions = sorted(session.scalars(select(Person.region_code).distinct()))
        assert session.scalar(select(func.count()).select_from(ListEntry)), "no list entries"
        tokens = {
            str(role): create_client(session, name=str(role), role=role, **scope).token
            for role, scope in (
                (Role.GRID_WORKER, {"grids": grids[:2]}),
                (Role.OPERATOR, {}),
                (Role.ADMIN, {}),
                (Role.AUDITOR, {}),
                (Role.INSPECTOR, {"regions": [r[:4] for r in regions[:1]]}),
            )
        }
        assert session.scalar(select(func.count()).select_from(IntegrityLead)) is not None
    yield CrawledCity(services=services, tokens=tokens, grids=grids)
    services.engine.dispose()


def links(html: str) -> list[str]:
    """Return the same-origin page links of a page, without fragments or language switches."""
    found = []
    for raw in HREF.findall(html):
        target = urldefrag(raw.replace("&amp;", "&"))[0]
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path.startswith("/web/"):
            continue
        if parts.path.startswith("/web/static/") or "lang=" in parts.query:
            continue  # the stylesheet is no page; languages are crawled apart (below)
        found.append(target)
    return found


def crawl(client: TestClient, seeds: list[str], *, per_file: int | None = None) -> dict[str, int]:
    """Open every page reachable from `seeds`, breadth first; return each URL's status.

    `per_file` caps the task and person pages opened (None: all of them).
    """
    seen: dict[str, int] = {}
    files = 0
    todo = deque(seeds)
    while todo:
        url = todo.popleft()
        if url in seen:
            continue
        if url.startswith(("/web/tasks/", "/web/persons/")):
            if per_file is not None and files >= per_file:
                continue
            files += 1
        answer = client.get(url)
        seen[url] = answer.status_code
        assert answer.status_code < 500, (url, answer.status_code, answer.text[:300])
        if answer.is_redirect:
            todo.append(answer.headers["location"])
            continue
        if "format=csv" in url:  # an export of a page's table: a file, with no links
            assert answer.headers["content-type"].startswith("text/csv"), (url, answer.text[:200])
            continue
        assert answer.headers["content-type"].startswith("text/html"), (url, answer.text[:200])
        todo.extend(link for link in links(answer.text) if link not in seen)
    return seen


def test_every_page_every_role_reaches_answers_without_a_server_error(
    crawled_city: CrawledCity,
) -> None:
    app = create_app(crawled_city.services)
    opened: dict[str, dict[str, int]] = {}
    with TestClient(app, follow_redirects=False) as base:
        for role, token in crawled_city.tokens.items():
            client = TestClient(base.app, follow_redirects=False, raise_server_exceptions=False)
            answer = sign_in(client, token)
            assert answer.status_code == 303, (role, answer.text[:200])
            home = answer.headers["location"]
            seeds = [home, "/web/queue", "/web/dashboard", "/web/runs", "/web/orders"]
            if role != Role.GRID_WORKER:
                seeds += [f"/web/queue?grid={grid}" for grid in crawled_city.grids]
            # Admins and auditors see the very pages an operator sees (none is scoped):
            # a sample of the files shows what their roles change (forms, navigation).
            sample = 12 if role in (Role.ADMIN, Role.AUDITOR) else None
            opened[role] = crawl(client, seeds, per_file=sample)
            # Every page of the navigation in English too.
            for page in ("/web/queue", "/web/dashboard", "/web/runs", "/web/orders"):
                english = client.get(f"{page}?lang=en")
                assert english.status_code < 500, (role, page, english.text[:300])
            client.cookies.clear()

    def count(role: str, prefix: str) -> int:
        return sum(1 for url, status in opened[role].items() if url.startswith(prefix)
                   and status == 200)  # fmt: skip

    # The crawl reached what each role works with: tasks with traces and persons for the
    # supervisors and the grid worker, runs for the supervisors, orders for the inspector.
    for role in ("grid_worker", "operator", "admin", "auditor"):
        assert count(role, "/web/tasks/") > 0, role
        assert count(role, "/web/persons/") > 0, role
    for role in ("operator", "admin", "auditor"):
        assert count(role, "/web/runs/") >= len(MONTH_ENDS), role
    assert count("operator", "/web/tasks/") >= count("grid_worker", "/web/tasks/")
    assert count("inspector", "/web/orders") > 0


def test_no_template_hides_a_helper_behind_a_variable_of_its_name() -> None:
    """A loop or a `set` named like a helper (label, t) breaks every call of it below."""
    env = TEMPLATES.env
    helpers = {"t", "label", *env.globals}
    for name in env.list_templates(extensions=["html"]):
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        tree = env.parse(source)
        for node in tree.find_all((nodes.For, nodes.Assign, nodes.With)):
            targets = [node.target] if not isinstance(node, nodes.With) else node.targets
            for target in targets:
                for found in target.find_all(nodes.Name):
                    assert found.name not in helpers, f"{name}:{node.lineno} hides {found.name}()"
