"""Face verification callbacks: signed, within a window, once; the result becomes a trace."""

from __future__ import annotations

import time

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from models import FaceCallback, ReviewTask, TaskStatus, VisitOutcome
from tests.api.conftest import AS_OF, World

URL = "/api/v1/face-verifications/callback"


def _result(world: World, result: str = "pass") -> dict[str, object]:
    return {
        "request_id": world.tasks["face_g1"], "result": result,
        "verified_at": "2025-06-01T10:00:00+08:00", "channel": "app", "score": 0.93,
    }  # fmt: skip


def _callbacks(world: World) -> int:
    with session_scope(world.services.sessions) as session:
        return len(session.query(FaceCallback).all())


def test_a_bad_signature_is_refused(sqlite_world: World) -> None:
    raw, headers = sqlite_world.signed(_result(sqlite_world))
    tampered = raw.replace(b'"pass"', b'"fail"')
    response = sqlite_world.client.post(URL, content=tampered, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert "X-Signature" in response.json()["detail"]
    wrong_key = {**headers, "X-Signature": "0" * 64}
    assert sqlite_world.client.post(URL, content=raw, headers=wrong_key).status_code == 401
    unsigned = {k: v for k, v in headers.items() if k != "X-Signature"}
    assert sqlite_world.client.post(URL, content=raw, headers=unsigned).status_code == 401
    assert _callbacks(sqlite_world) == 0


def test_an_old_or_future_timestamp_is_refused(sqlite_world: World) -> None:
    window = sqlite_world.services.settings.api_replay_window_s
    for at in (time.time() - window - 5, time.time() + window + 5):
        raw, headers = sqlite_world.signed(_result(sqlite_world), at=at)
        response = sqlite_world.client.post(URL, content=raw, headers=headers)
        assert response.status_code == 401
        assert "replay window" in response.json()["detail"]
    assert _callbacks(sqlite_world) == 0


def test_a_replayed_message_is_refused_and_a_second_result_conflicts(sqlite_world: World) -> None:
    raw, headers = sqlite_world.signed(_result(sqlite_world))
    first = sqlite_world.client.post(URL, content=raw, headers=headers)
    assert first.status_code == 200, first.json()
    replay = sqlite_world.client.post(URL, content=raw, headers=headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]
    raw, headers = sqlite_world.signed(_result(sqlite_world, "fail"), at=time.time() + 1)
    again = sqlite_world.client.post(URL, content=raw, headers=headers)
    assert again.status_code == 409
    assert _callbacks(sqlite_world) == 1


def test_a_pass_becomes_a_trace_and_the_next_run_settles_the_request(world: World) -> None:
    pending = world.client.get(
        "/api/v1/face-verifications/requests?status=pending", headers=world.auth("verifier")
    ).json()
    assert [item["request_id"] for item in pending["items"]] == [world.tasks["face_g1"]]
    assert pending["items"][0]["id_number"] == world.id_numbers["P6"]
    raw, headers = world.signed(_result(world))
    assert world.client.post(URL, content=raw, headers=headers).status_code == 200
    after = world.client.get(
        "/api/v1/face-verifications/requests", headers=world.auth("verifier")
    ).json()
    assert after["items"] == []
    person = world.client.get("/api/v1/persons/P6", headers=world.auth("operator")).json()
    assert [trace["kind"] for trace in person["timeline"]["face"]] == ["pass_app"]
    execute_run(world.services, as_of=AS_OF.replace(day=30, month=6))
    with session_scope(world.services.sessions) as session:
        task = session.get_one(ReviewTask, world.tasks["face_g1"])
        assert task.status == TaskStatus.DONE
        assert task.outcome == VisitOutcome.FACE_PASSED


def test_a_malformed_result_names_the_field(sqlite_world: World) -> None:
    body = {**_result(sqlite_world), "result": "maybe"}
    raw, headers = sqlite_world.signed(body)
    response = sqlite_world.client.post(URL, content=raw, headers=headers)
    assert response.status_code == 422
    assert [item["field"] for item in response.json()["detail"]] == ["result"]
