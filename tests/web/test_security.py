"""Security findings on the pages and the API: sign-out, refusals in the audit, hidden persons."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import api.web.supervision as supervision_module
from api.web.pages import SECURITY_HEADERS
from api.web.session import COOKIE, LANG_COOKIE
from liveness.db import session_scope
from models import AuditEntry, IntegrityLead
from tests.api.conftest import World
from tests.web.conftest import csrf_of, sign_in


def fresh(world: World) -> TestClient:
    """Return a new browser (no cookies) on the world's app."""
    return TestClient(world.client.app, follow_redirects=False, raise_server_exceptions=False)


def audit_since(world: World, first_id: int) -> list[AuditEntry]:
    """Return the audit entries written after `first_id`, oldest first."""
    with session_scope(world.services.sessions) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.id > first_id)))
        session.expunge_all()
    return sorted(rows, key=lambda row: row.id)


def last_audit_id(world: World) -> int:
    """Return the id of the newest audit entry (0 if none)."""
    with session_scope(world.services.sessions) as session:
        rows = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
        return next(iter(rows), 0)


def test_signing_out_ends_the_session_on_the_server(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["grid_worker"])
    saved = client.cookies.get(COOKIE, path="/web")
    assert saved and client.get("/web/queue").status_code == 200
    csrf = csrf_of(client.get("/web/queue").text)
    assert client.post("/web/sign-out", data={"csrf_token": csrf}).status_code == 303
    # Someone who kept a copy of the cookie (a shared phone, a proxy log) gets nothing.
    replay = fresh(web_world)
    replay.cookies.set(COOKIE, saved, path="/web")
    answer = replay.get("/web/queue")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/web/sign-in")
    assert "web.sign_out" in {entry.action for entry in audit_since(web_world, 0)}


def test_a_refused_page_is_audited_as_refused_never_as_the_read(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["grid_worker"])
    first = last_audit_id(web_world)
    assert client.get("/web/persons/P4").status_code == 404  # grid G2: hidden
    assert client.get("/web/dashboard").status_code == 403  # not a grid worker's page
    assert client.get(f"/web/tasks/{web_world.tasks['visit_g2']}").status_code == 404
    entries = audit_since(web_world, first)
    actions = [(entry.action, entry.target_ref) for entry in entries]
    assert ("persons.read", "P4") not in actions
    assert ("persons.read.refused", "P4") in actions
    assert ("indicators.read.refused", "/web/dashboard") in actions
    refused = [entry for entry in entries if entry.action.endswith(".refused")]
    assert len(refused) == 3 and all(entry.actor == "grid_worker" for entry in refused)
    assert {entry.detail["refused"] for entry in refused} == {"out_of_scope", "forbidden"}


def test_a_refused_api_call_is_audited_as_refused(web_world: World) -> None:
    first = last_audit_id(web_world)
    worker = web_world.auth("grid_worker")
    assert web_world.client.get("/api/v1/persons/P4", headers=worker).status_code == 404
    assert web_world.client.get("/api/v1/audit", headers=worker).status_code == 403
    task = web_world.tasks["visit_g2"]
    body = {"outcome": "alive_confirmed"}
    posted = web_world.client.post(f"/api/v1/tasks/{task}/outcome", json=body, headers=worker)
    assert posted.status_code == 404
    actions = [(entry.action, entry.target_ref) for entry in audit_since(web_world, first)]
    assert ("persons.read", "P4") not in actions and ("tasks.outcome", str(task)) not in actions
    assert ("persons.read.refused", "P4") in actions
    assert ("audit.read.refused", "/api/v1/audit") in actions
    assert ("tasks.outcome.refused", str(task)) in actions


def test_a_page_failing_inside_answers_an_html_error_page(
    web_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(supervision_module, "runs_page", broken)  # the runs pages live there
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    answer = client.get("/web/runs")
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    assert 'lang="zh-CN"' in answer.text and "系统出错" in answer.text
    assert 'href="/web/dashboard"' in answer.text  # the navigation, to carry on
    assert "RuntimeError" not in answer.text and "a bug" not in answer.text
    client.cookies.set(LANG_COOKIE, "en")
    english = client.get("/web/runs")
    assert english.status_code == 500 and 'lang="en"' in english.text
    assert "Something went wrong on our side" in english.text


def test_every_error_under_web_is_a_page_in_the_pages_language(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    for url, status in (
        ("/web/no-such-page", 404),
        ("/web/runs/999999", 404),
        ("/web/tasks/not-a-number", 404),
        ("/web/no-such-page?lang=en", 404),
    ):
        answer = client.get(url)
        assert answer.status_code == status, url
        assert answer.headers["content-type"].startswith("text/html"), url
        assert answer.headers["X-Frame-Options"] == "DENY", url
        assert 'href="/web/runs"' in answer.text, url  # signed in: the navigation
    assert client.put("/web/runs").headers["content-type"].startswith("text/html")  # 405
    assert "This page or record does not exist" in client.get("/web/nothing?lang=en").text
    # Signed out, an unknown page is still a page (without navigation).
    stranger = fresh(web_world).get("/web/no-such-page")
    assert stranger.status_code == 404 and stranger.headers["content-type"].startswith("text/html")
    # The API keeps its JSON errors.
    assert web_world.client.get("/api/v1/nothing").json()["error"] == "http_error"


def test_the_api_documentation_is_off_unless_enabled(web_world: World) -> None:
    for url in ("/docs", "/redoc", "/openapi.json"):
        assert web_world.client.get(url).status_code == 404, url
    assert web_world.client.app.openapi()["paths"]  # type: ignore[attr-defined]


def test_card_and_identity_numbers_in_leads_are_masked(web_world: World) -> None:
    card, number = "6217000012345678", web_world.id_numbers["P1"]
    with session_scope(web_world.services.sessions) as session:
        lead = session.get(IntegrityLead, web_world.leads["ordered"])
        assert lead is not None
        lead.evidence = {
            "listed": [{"source": "card_txn", "card": card, "day": "2025-05-01"}],
            "persons": [{"person_ref": "P1", "id_number": number}],
        }
    leads = web_world.client.get("/api/v1/leads", headers=web_world.auth("admin"))
    assert leads.status_code == 200
    assert card not in leads.text and number not in leads.text
    assert "************5678" in leads.text
    inspector = fresh(web_world)
    sign_in(inspector, web_world.tokens["inspector"])
    page = inspector.get(f"/web/orders/{web_world.orders['mine']}")
    assert page.status_code == 200
    assert card not in page.text and number not in page.text and "5678" in page.text
