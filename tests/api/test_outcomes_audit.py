"""Outcomes are idempotent under a key; reads of personal data and changes leave audit entries."""

from __future__ import annotations

from sqlalchemy import select

from liveness.db import session_scope
from models import AuditEntry, IdempotencyKey, ReviewTask, TaskStatus
from tests.api.conftest import World


def test_the_same_key_and_body_give_the_same_answer(world: World) -> None:
    url = f"/api/v1/tasks/{world.tasks['visit_g1_high']}/outcome"
    headers = {**world.auth("grid_worker"), "Idempotency-Key": "visit-42"}
    body = {"outcome": "deceased", "on": "2025-06-03", "died_on": "2025-06-01"}
    first = world.client.post(url, json=body, headers=headers)
    assert first.status_code == 200, first.json()
    again = world.client.post(url, json=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    other = world.client.post(url, json={**body, "died_on": "2025-05-31"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_conflict"
    with session_scope(world.services.sessions) as session:
        task = session.get_one(ReviewTask, world.tasks["visit_g1_high"])
        assert task.status == TaskStatus.DONE
        assert task.outcome_detail["died_on"] == "2025-06-01"
        assert len(session.scalars(select(IdempotencyKey)).all()) == 1


def test_an_invalid_outcome_names_the_field(sqlite_world: World) -> None:
    url = f"/api/v1/tasks/{sqlite_world.tasks['visit_g1_high']}/outcome"
    headers = sqlite_world.auth("grid_worker")
    missing = sqlite_world.client.post(url, json={"outcome": "deceased"}, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["detail"].startswith("died_on:")
    unknown = sqlite_world.client.post(url, json={"outcome": "asleep"}, headers=headers)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "outcome"
    wrong_kind = sqlite_world.client.post(url, json={"outcome": "face_passed"}, headers=headers)
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["detail"].startswith("outcome:")
    # A mistyped year: after today, or before the task existed. Neither closes the task.
    future = sqlite_world.client.post(
        url,
        json={"outcome": "deceased", "on": "2999-01-01", "died_on": "2998-06-01"},
        headers=headers,
    )
    assert future.status_code == 422
    assert future.json()["detail"].startswith("on: the review day 2999-01-01 is after today")
    before = sqlite_world.client.post(
        url, json={"outcome": "alive_confirmed", "on": "2020-01-01"}, headers=headers
    )
    assert before.status_code == 422
    assert before.json()["detail"].startswith("on: the review day 2020-01-01 is before the task")
    with session_scope(sqlite_world.services.sessions) as session:
        assert session.get_one(ReviewTask, sqlite_world.tasks["visit_g1_high"]).status == "open"


def test_reads_of_personal_data_and_changes_are_audited(sqlite_world: World) -> None:
    world = sqlite_world
    calls = [
        ("GET", "/api/v1/persons/P2", "operator", {}),
        ("GET", "/api/v1/grids/G1/tasks", "grid_worker", {}),
        ("GET", "/api/v1/lists/entries", "payment", {}),
        ("POST", f"/api/v1/tasks/{world.tasks['visit_g1_low']}/claim", "grid_worker", {}),
        ("POST", f"/api/v1/notices/{world.notices['face']}/sent", "notifier", {}),
    ]
    for method, url, role, kwargs in calls:
        response = world.client.request(method, url, headers=world.auth(role), **kwargs)
        assert response.status_code == 200, (url, response.json())
    with session_scope(world.services.sessions) as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    seen = [(e.actor, e.action, e.target_type, e.target_ref) for e in entries]
    assert seen == [
        ("operator", "persons.read", "person", "P2"),
        ("grid_worker", "tasks.read", "grid", "G1"),
        ("payment", "lists.read", "list", None),
        ("grid_worker", "tasks.claim", "review_task", str(world.tasks["visit_g1_low"])),
        ("notifier", "notices.sent", "notice", str(world.notices["face"])),
    ]
    assert all(e.remote_addr == "testclient" and e.at is not None for e in entries)
    log = world.client.get(
        "/api/v1/audit", params={"target_type": "person"}, headers=world.auth("auditor")
    ).json()
    assert [item["target_ref"] for item in log["items"]] == ["P2"]
    assert log["total"] == 1


def test_a_refused_change_leaves_no_trace_but_its_refusal(sqlite_world: World) -> None:
    world = sqlite_world
    response = world.client.post(
        f"/api/v1/lists/entries/{world.entries['seq2']}/approve", headers=world.auth("operator")
    )
    assert response.status_code == 409
    assert response.json()["error"] == "approval_refused"
    with session_scope(world.services.sessions) as session:
        # The approval is not recorded as done: only its refusal is, as refused.
        actions = [entry.action for entry in session.scalars(select(AuditEntry))]
    assert actions == ["lists.approve.refused"]
