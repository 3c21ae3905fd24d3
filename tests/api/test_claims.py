"""Claims: of concurrent claimants exactly one wins; a lapsed claim can be taken over."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import update

from liveness.access import create_client
from liveness.db import session_scope
from models import ReviewTask, Role
from tests.api.conftest import World

CLAIMANTS = 8


def test_concurrent_claims_have_exactly_one_winner(world: World) -> None:
    tokens = {}
    with session_scope(world.services.sessions) as session:
        for n in range(CLAIMANTS):
            issued = create_client(session, name=f"gw{n}", role=Role.GRID_WORKER, grids=["G1"])
            tokens[f"gw{n}"] = issued.token
    for task in ("visit_g1_low", "visit_g1_high"):
        task_id = world.tasks[task]
        barrier = threading.Barrier(CLAIMANTS)
        answers: dict[str, int] = {}

        def claim(
            name: str, token: str, task_id: int = task_id,
            barrier: threading.Barrier = barrier, answers: dict[str, int] = answers,
        ) -> None:  # fmt: skip
            barrier.wait()
            response = world.client.post(
                f"/api/v1/tasks/{task_id}/claim", headers={"Authorization": f"Bearer {token}"}
            )
            answers[name] = response.status_code

        threads = [threading.Thread(target=claim, args=item) for item in tokens.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [name for name, status in answers.items() if status == 200]
        assert len(winners) == 1, answers
        assert sorted(answers.values()) == [200] + [409] * (CLAIMANTS - 1), answers
        with session_scope(world.services.sessions) as session:
            assert session.get_one(ReviewTask, task_id).claimed_by == winners[0]


def test_a_lapsed_claim_can_be_taken_and_a_held_one_cannot(sqlite_world: World) -> None:
    world = sqlite_world
    task_id = world.tasks["visit_g1_low"]
    url = f"/api/v1/tasks/{task_id}/claim"
    assert world.client.post(url, headers=world.auth("grid_worker")).status_code == 200
    # Claiming again extends one's own claim.
    assert world.client.post(url, headers=world.auth("grid_worker")).status_code == 200
    held = world.client.post(url, headers=world.auth("operator"))
    assert held.status_code == 409
    assert "claimed by grid_worker" in held.json()["detail"]
    outcome = world.client.post(
        f"/api/v1/tasks/{task_id}/outcome", headers=world.auth("operator"),
        json={"outcome": "alive_confirmed"},
    )  # fmt: skip
    assert outcome.status_code == 409
    with session_scope(world.services.sessions) as session:
        session.execute(
            update(ReviewTask)
            .where(ReviewTask.id == task_id)
            .values(claim_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        )
    queue = world.client.get("/api/v1/grids/G1/tasks?status=open", headers=world.auth("operator"))
    assert task_id in [item["id"] for item in queue.json()["items"]]
    taken = world.client.post(url, headers=world.auth("operator"))
    assert taken.status_code == 200
    assert taken.json()["claimed_by"] == "operator"


def test_a_face_verification_cannot_be_claimed(sqlite_world: World) -> None:
    response = sqlite_world.client.post(
        f"/api/v1/tasks/{sqlite_world.tasks['face_g1']}/claim",
        headers=sqlite_world.auth("grid_worker"),
    )
    assert response.status_code == 409
    assert "face verification" in response.json()["detail"]
