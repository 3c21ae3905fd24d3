"""The access matrix: every endpoint x every role, plus no token, bad, expired and revoked tokens."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

from liveness.access import create_client, revoke_client
from liveness.db import session_scope
from models import ApiClient, Role
from tests.api.conftest import World

# Every role, the ones added later included: a role no cell below names is refused everywhere.
ROLES = [str(role) for role in Role]
ADMIN, OPERATOR, GRID, PAYMENT, VERIFIER, NOTIFIER, AUDITOR, INSPECTOR, REGISTRAR = (
    str(role) for role in (Role.ADMIN, Role.OPERATOR, Role.GRID_WORKER, Role.PAYMENT,
                           Role.VERIFIER, Role.NOTIFIER, Role.AUDITOR, Role.INSPECTOR,
                           Role.REGISTRAR)
)  # fmt: skip

# endpoint -> the roles allowed; every other role gets 403, no token 401. Written out here,
# not derived from liveness.access.PERMISSIONS, so that a change there fails this test.
MATRIX: dict[str, set[str]] = {
    "GET /runs": {ADMIN, OPERATOR, AUDITOR},
    "GET /runs/{run}": {ADMIN, OPERATOR, AUDITOR},
    "GET /persons/P2": {ADMIN, OPERATOR, GRID, AUDITOR},
    "GET /grids/G1/tasks": {ADMIN, OPERATOR, GRID, AUDITOR},
    "GET /reviews/overdue": {ADMIN, OPERATOR, GRID, AUDITOR},
    "POST /tasks/{visit}/claim": {ADMIN, OPERATOR, GRID},
    "POST /tasks/{visit2}/outcome": {ADMIN, OPERATOR, GRID},
    "GET /face-verifications/requests": {ADMIN, VERIFIER},
    "POST /face-verifications/callback": {VERIFIER},
    "GET /notices": {ADMIN, NOTIFIER},
    "POST /notices/{notice}/sent": {ADMIN, NOTIFIER},
    "GET /lists/entries": {ADMIN, OPERATOR, PAYMENT, AUDITOR},
    "POST /lists/ack": {ADMIN, PAYMENT},
    "GET /lists/entries.csv": {ADMIN, OPERATOR, PAYMENT, AUDITOR},
    "POST /lists/entries/{held}/approve": {ADMIN, OPERATOR},
    "POST /lists/entries/{held}/reject": {ADMIN, OPERATOR},
    "GET /indicators": {ADMIN, OPERATOR, AUDITOR},
    "GET /audit": {ADMIN, AUDITOR},
    "GET /leads": {ADMIN, OPERATOR, AUDITOR, INSPECTOR},
    "POST /orders": {ADMIN, OPERATOR},
    "GET /orders": {ADMIN, OPERATOR, AUDITOR, INSPECTOR},
    "GET /orders/{order}": {ADMIN, OPERATOR, AUDITOR, INSPECTOR},
    "POST /leads/{ordered}/answer": {ADMIN, INSPECTOR},
    "POST /leads/{answered}/review": {ADMIN, OPERATOR},
    "GET /integrity/precision": {ADMIN, OPERATOR, AUDITOR},
    "POST /runs": {ADMIN, OPERATOR},
    # A registrar's envelope is checked in the handler: an empty body is 422, not a refusal.
    "POST /death-notifications": {REGISTRAR},
}


def _request(world: World, endpoint: str) -> tuple[str, str, dict[str, Any]]:
    """Return method, URL and keyword arguments of an endpoint's request."""
    method, path = endpoint.split(" ")
    path = path.format(
        run=world.run_id, visit=world.tasks["visit_g1_low"], visit2=world.tasks["visit_g1_high"],
        notice=world.notices["face"], held=world.entries["seq2"], order=world.orders["mine"],
        ordered=world.leads["ordered"], answered=world.leads["answered"],
    )  # fmt: skip
    kwargs: dict[str, Any] = {}
    if endpoint == "POST /tasks/{visit2}/outcome":
        kwargs["json"] = {"outcome": "alive_confirmed"}
    elif endpoint == "POST /lists/ack":
        kwargs["json"] = {"last_seq": 1}
    elif endpoint == "GET /lists/entries.csv":
        kwargs["params"] = {"run": world.run_id}
    elif endpoint == "POST /lists/entries/{held}/reject":
        kwargs["json"] = {"reason": "no proof on file"}
    elif endpoint == "POST /runs":
        kwargs["json"] = {"as_of": "2025-06-30"}
    elif endpoint == "POST /orders":
        kwargs["json"] = {}
    elif endpoint == "POST /leads/{ordered}/answer":
        kwargs["json"] = {"verdict": "confirmed", "amount_to_recover": "120.00"}
    elif endpoint == "POST /leads/{answered}/review":
        kwargs["json"] = {"decision": "return"}
    return method, f"/api/v1{path}", kwargs


def _call(world: World, endpoint: str, headers: dict[str, str]) -> int:
    method, url, kwargs = _request(world, endpoint)
    if endpoint == "POST /face-verifications/callback":
        raw, signed = world.signed(
            {"request_id": world.tasks["face_g1"], "result": "pass",
             "verified_at": "2025-06-01T10:00:00+08:00"}
        )  # fmt: skip
        signed.pop("Authorization")
        return world.client.post(url, content=raw, headers={**signed, **headers}).status_code
    return world.client.request(method, url, headers=headers, **kwargs).status_code


def test_the_matrix_covers_every_route(sqlite_world: World) -> None:
    paths = sqlite_world.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = {
        f"{method.upper()} {path.removeprefix('/api/v1')}"
        for path, operations in paths.items()
        for method in operations
    }
    covered = {
        endpoint.replace("{run}", "{run_id}").replace("P2", "{person_ref}").replace("G1", "{grid}")
        .replace("{visit}", "{task_id}").replace("{visit2}", "{task_id}")
        .replace("{notice}", "{notice_id}").replace("{held}", "{entry_id}")
        .replace("{order}", "{order_id}").replace("{ordered}", "{lead_id}")
        .replace("{answered}", "{lead_id}")
        for endpoint in MATRIX
    }  # fmt: skip
    assert routes == covered


def test_every_cell_of_the_matrix(world: World) -> None:
    outcomes: dict[tuple[str, str], int] = {}
    for endpoint, allowed in MATRIX.items():
        assert _call(world, endpoint, {}) == 401, endpoint
        assert _call(world, endpoint, {"Authorization": "Bearer lv_not_a_token"}) == 401
        for role in ROLES:
            status = _call(world, endpoint, world.auth(role))
            outcomes[(endpoint, role)] = status
            if role in allowed:
                assert status not in (401, 403) and status < 500, (endpoint, role, status)
            else:
                assert status == 403, (endpoint, role, status)
    world.client.app.state.runs.join(timeout=60)  # type: ignore[attr-defined]


ScopeCase = Callable[[World], tuple[str, str, dict[str, Any]]]
SCOPED: dict[str, ScopeCase] = {
    "queue": lambda w: ("GET", "/api/v1/grids/G2/tasks", {}),
    "overdue": lambda w: ("GET", "/api/v1/reviews/overdue", {"params": {"grid": "G2"}}),
    "person": lambda w: ("GET", "/api/v1/persons/P4", {}),
    "claim": lambda w: ("POST", f"/api/v1/tasks/{w.tasks['visit_g2']}/claim", {}),
    "outcome": lambda w: (
        "POST",
        f"/api/v1/tasks/{w.tasks['visit_g2']}/outcome",
        {"json": {"outcome": "alive_confirmed"}},
    ),
}
REGION_SCOPED: dict[str, ScopeCase] = {
    "order": lambda w: ("GET", f"/api/v1/orders/{w.orders['other']}", {}),
    "leads": lambda w: ("GET", "/api/v1/leads", {"params": {"region": "330782"}}),
    "orders": lambda w: ("GET", "/api/v1/orders", {"params": {"region": "3307"}}),
    "answer": lambda w: (
        "POST",
        f"/api/v1/leads/{w.leads['other']}/answer",
        {"json": {"verdict": "explained"}},
    ),
}

# The cases naming a person or a task, and the same address naming none.
HIDDEN: dict[str, Callable[[str], str]] = {
    "person": lambda url: url.replace("/P4", "/999999"),
    "claim": lambda url: "/".join([*url.split("/")[:4], "999999", *url.split("/")[5:]]),
    "outcome": lambda url: "/".join([*url.split("/")[:4], "999999", *url.split("/")[5:]]),
}


@pytest.mark.parametrize("case", SCOPED)
def test_a_grid_worker_is_refused_outside_their_grids(sqlite_world: World, case: str) -> None:
    method, url, kwargs = SCOPED[case](sqlite_world)
    refused = sqlite_world.client.request(method, url, headers=sqlite_world.auth(GRID), **kwargs)
    if case in HIDDEN:
        # A person or task of another grid is answered exactly as one that does not exist.
        absent = sqlite_world.client.request(
            method, HIDDEN[case](url), headers=sqlite_world.auth(GRID), **kwargs
        )
        assert refused.status_code == absent.status_code == 404, refused.json()
        body = refused.json()
        assert body["error"] == absent.json()["error"] == "not_found"
        assert body["detail"] == absent.json()["detail"].replace("999999", url.split("/")[4])
        assert "grid" not in body["detail"]
    else:
        assert refused.status_code == 403, refused.json()
        assert refused.json()["error"] == "forbidden" and "grid" in refused.json()["detail"]
    allowed = sqlite_world.client.request(
        method, url, headers=sqlite_world.auth(OPERATOR), **kwargs
    )
    assert allowed.status_code == 200, allowed.json()


@pytest.mark.parametrize("case", REGION_SCOPED)
def test_an_inspector_is_refused_outside_their_regions(sqlite_world: World, case: str) -> None:
    method, url, kwargs = REGION_SCOPED[case](sqlite_world)
    refused = sqlite_world.client.request(
        method, url, headers=sqlite_world.auth(INSPECTOR), **kwargs
    )
    assert refused.status_code == 403, refused.json()
    assert refused.json()["error"] == "forbidden" and "region" in refused.json()["detail"]
    allowed = sqlite_world.client.request(method, url, headers=sqlite_world.auth(ADMIN), **kwargs)
    assert allowed.status_code == 200, allowed.json()


def _expire_and_revoke(world: World, *, expire: str, revoke: str) -> None:
    """Let one client's token have expired a second ago, and revoke another's."""
    with session_scope(world.services.sessions) as session:
        session.execute(
            update(ApiClient)
            .where(ApiClient.name == expire)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        revoke_client(session, name=revoke)


def test_expired_and_revoked_tokens_are_refused(sqlite_world: World) -> None:
    with session_scope(sqlite_world.services.sessions) as session:
        soon = create_client(session, name="soon", role=Role.AUDITOR, expires_days=1)
        gone = create_client(session, name="gone", role=Role.AUDITOR)
    url = "/api/v1/indicators"
    for issued in (soon, gone):
        ok = sqlite_world.client.get(url, headers={"Authorization": f"Bearer {issued.token}"})
        assert ok.status_code == 200
    _expire_and_revoke(sqlite_world, expire="soon", revoke="gone")
    for issued, why in ((soon, "expired"), (gone, "revoked")):
        refused = sqlite_world.client.get(url, headers={"Authorization": f"Bearer {issued.token}"})
        assert refused.status_code == 401
        assert refused.json() == {
            "error": "unauthenticated",
            "detail": f"the token {'has expired' if why == 'expired' else 'was revoked'}",
        }
        assert refused.headers["WWW-Authenticate"] == "Bearer"


def test_a_cached_token_is_still_refused_once_revoked_or_expired(world: World) -> None:
    """The queue and the feed trust a token looked up a moment ago, and still verify it."""
    with session_scope(world.services.sessions) as session:
        soon = create_client(session, name="soon-cached", role=Role.PAYMENT, expires_days=1)
        gone = create_client(session, name="gone-cached", role=Role.PAYMENT)
    for issued in (soon, gone):
        headers = {"Authorization": f"Bearer {issued.token}"}
        for _ in range(2):  # the second comes from the cache (PostgreSQL)
            assert world.client.get("/api/v1/lists/entries", headers=headers).status_code == 200
            assert world.client.get("/api/v1/grids/G1/tasks", headers=headers).status_code == 403
    _expire_and_revoke(world, expire="soon-cached", revoke="gone-cached")
    for issued, why in ((soon, "has expired"), (gone, "was revoked")):
        headers = {"Authorization": f"Bearer {issued.token}"}
        # The queue is outside a payment client's role: a revoked token is 401 there, not 403.
        for url in ("/api/v1/lists/entries", "/api/v1/grids/G1/tasks"):
            refused = world.client.get(url, headers=headers)
            assert refused.status_code == 401, (url, refused.json())
            assert refused.json() == {"error": "unauthenticated", "detail": f"the token {why}"}


def test_an_address_holding_a_nul_character_is_refused_before_anything_reads_it(
    world: World,
) -> None:
    # PostgreSQL stores no text with a NUL: let through, the request's own audit entry failed
    # (a 500, and no record). Refused first, on both backends, pages and API alike.
    admin = world.auth("admin")
    for path in ("/api/v1/persons/%00", "/api/v1/audit?actor=%00", "/api/v1/grids/a%00b/tasks",
                 "/api/v1/leads?region=33%0007"):  # fmt: skip
        answer = world.client.get(path, headers=admin)
        assert answer.status_code == 400, path
        assert answer.json()["error"] == "bad_request", path
    page = world.client.get("/web/persons/%00")
    assert page.status_code == 400 and "text/html" in page.headers["content-type"]
    # An ordinary address still reaches its route.
    assert world.client.get("/api/v1/persons/P1", headers=admin).status_code == 200
