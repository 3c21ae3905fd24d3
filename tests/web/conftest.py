"""Web pages over the API's small world: a signed-in browser session per role."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from liveness.services import Services
from tests.api.conftest import World, served_world
from tests.liveness.conftest import city, services_factory  # noqa: F401  (fixtures)
from tests.web.browsing import CHROMIUM, serving

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """Return the CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, token: str, *, next_page: str | None = None) -> httpx.Response:
    """Sign a test client in with a token, as a browser would: form, then post."""
    form = client.get("/web/sign-in")
    assert form.status_code == 200
    data = {"csrf_token": csrf_of(form.text), "token": token}
    if next_page:
        data["next"] = next_page
    return client.post("/web/sign-in", data=data, follow_redirects=False)


def fresh(world: World) -> TestClient:
    """Return a new browser (no cookies) on the world's app."""
    return TestClient(world.client.app, follow_redirects=False)


def signed_in(world: World, role: str) -> TestClient:
    """Return a new browser signed in as the world's client of `role`."""
    client = fresh(world)
    assert sign_in(client, world.tokens[role]).status_code == 303
    return client


def worker(world: World) -> TestClient:
    """Return a browser signed in as the world's grid worker (grid G1)."""
    return signed_in(world, "grid_worker")


def on_task(world: World, task: int) -> tuple[TestClient, str]:
    """Return the grid worker's browser on a task's page, and the CSRF token of its forms."""
    client = worker(world)
    return client, csrf_of(client.get(f"/web/tasks/{task}").text)


@pytest.fixture(params=["sqlite", "postgresql"])
def web_world(
    request: pytest.FixtureRequest,
    services_factory: Callable[[str], Services],  # noqa: F811
) -> Iterator[World]:
    """Give the API's seeded world on each backend, its client not following redirects."""
    with served_world(services_factory(request.param), follow_redirects=False) as built:
        yield built


@pytest.fixture
def server(web_world: World) -> Iterator[str]:
    """Serve the world's app for the browser."""
    with serving(web_world.client.app) as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Launch Debian's Chromium once, headless; skip without it (fail on CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium fonts-wqy-zenhei)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )  # fmt: skip
        yield launched
        launched.close()
