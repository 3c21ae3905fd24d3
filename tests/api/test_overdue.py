"""GET /reviews/overdue: per grid, oldest first, paged, scoped to a grid worker's grids, audited."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from liveness.db import session_scope
from models import AuditEntry
from tests.api.conftest import World, make_reviews_late

URL = "/api/v1/reviews/overdue"


def _get(world: World, role: str, **params: Any) -> dict[str, Any]:
    answer = world.client.get(URL, params=params, headers=world.auth(role))
    assert answer.status_code == 200, answer.json()
    body: dict[str, Any] = answer.json()
    return body


def _ids(body: dict[str, Any]) -> list[int]:
    return [task["id"] for grid in body["grids"] for task in grid["tasks"]]


def test_supervisors_read_the_grids_behind_oldest_first(world: World) -> None:
    make_reviews_late(world)
    body = _get(world, "operator")
    tasks = world.tasks
    assert (body["total"], body["grids_behind"], body["limit"], body["offset"]) == (4, 2, 50, 0)
    assert [(g["grid_code"], g["overdue"], g["days_behind"]) for g in body["grids"]] == [
        ("G2", 2, 60), ("G1", 2, 40),
    ]  # fmt: skip
    assert _ids(body) == [
        tasks["visit_g2"],
        tasks["death_g2"],
        tasks["visit_g1_low"],
        tasks["visit_g1_high"],
    ]
    as_of = dt.date.fromisoformat(body["as_of"])
    first = body["grids"][0]["tasks"][0]
    assert first == {
        "id": tasks["visit_g2"], "kind": "home_visit", "status": "open", "person_ref": "P4",
        "id_number_masked": world.id_numbers["P4"][:6] + "********"
        + world.id_numbers["P4"][-4:],
        "due_on": (as_of - dt.timedelta(days=60)).isoformat(), "days_overdue": 60,
        "cause": "face_failed", "claimed_by": None,
    }  # fmt: skip
    assert body["grids"][0]["oldest_due_on"] == first["due_on"]
    # An auditor reads the same; a region filter narrows by the persons' regions.
    assert _get(world, "auditor") == body
    assert _get(world, "admin", region="1101")["total"] == 4
    assert _get(world, "operator", region="3301") == {
        **body, "total": 0, "grids_behind": 0, "grids": [],
    }  # fmt: skip
    assert _ids(_get(world, "operator", grid="G1")) == [
        tasks["visit_g1_low"],
        tasks["visit_g1_high"],
    ]


def test_pages_of_overdue_reviews_neither_skip_nor_repeat(sqlite_world: World) -> None:
    world = sqlite_world
    make_reviews_late(world)
    whole = _ids(_get(world, "operator"))
    for limit in (1, 3):
        seen: list[int] = []
        for offset in range(0, 6, limit):
            page = _get(world, "operator", limit=limit, offset=offset)
            assert (page["total"], page["limit"], page["offset"]) == (4, limit, offset)
            seen += _ids(page)
        assert seen == whole
    assert (
        world.client.get(URL, params={"limit": 0}, headers=world.auth("operator")).status_code
        == 422
    )
    assert (
        world.client.get(URL, params={"region": "33x"}, headers=world.auth("operator")).status_code
        == 422
    )


def test_a_grid_worker_reads_only_their_grids_and_every_read_is_audited(world: World) -> None:
    make_reviews_late(world)
    tasks = world.tasks
    own = _get(world, "grid_worker")
    assert [g["grid_code"] for g in own["grids"]] == ["G1"] and own["total"] == 2
    assert _get(world, "grid_worker", grid="G1") == own
    refused = world.client.get(URL, params={"grid": "G2"}, headers=world.auth("grid_worker"))
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "forbidden",
        "detail": "grid G2 is not one of this client's grids",
    }
    for role in ("payment", "inspector", "verifier", "notifier"):
        assert world.client.get(URL, headers=world.auth(role)).status_code == 403, role
    _get(world, "auditor", grid="G2", limit=1)
    with session_scope(world.services.sessions) as session:
        entries = session.execute(
            select(AuditEntry.actor, AuditEntry.target_ref, AuditEntry.detail)
            .where(AuditEntry.action == "reviews.overdue")
            .order_by(AuditEntry.id)
        ).all()
    assert [(actor, ref) for actor, ref, _ in entries] == [
        ("grid_worker", None), ("grid_worker", "G1"), ("auditor", "G2"),
    ]  # fmt: skip
    assert entries[0].detail == {
        "grids": ["G1"], "region": None, "limit": 50, "offset": 0,
        "tasks": [tasks["visit_g1_low"], tasks["visit_g1_high"]],
    }  # fmt: skip
    assert entries[2].detail["tasks"] == [tasks["visit_g2"]]
