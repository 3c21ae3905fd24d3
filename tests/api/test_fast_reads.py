"""The queue and the feed built by PostgreSQL in one statement answer what the ORM path does."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Integer, bindparam, func, select

from api.deps import CLIENT_CTE, Caller, ReadPool
from api.schemas import ListEntryRead, ListFeedRead, TaskPage, TaskRead, json_fields
from liveness.access import Principal
from liveness.db import session_scope
from liveness.views.lists import list_feed, list_feed_sql
from liveness.views.pg_json import postgresql_text
from liveness.views.queue import grid_queue
from models import (
    ApiClient,
    AuditEntry,
    ListAction,
    ListEntry,
    ListEntryStatus,
    ListReason,
    Person,
    ReviewTask,
    Role,
    TaskKind,
    TaskStatus,
    utcnow,
)
from tests.api.conftest import AS_OF, World, make_world
from tests.liveness.conftest import services_factory  # noqa: F401  (a fixture)


@pytest.fixture
def pg_world(services_factory: Any) -> Iterator[World]:  # noqa: F811
    """Give a seeded world on PostgreSQL with awkward values added to the queue and the feed."""
    world = make_world(services_factory("postgresql"))
    now = utcnow()
    with session_scope(world.services.sessions) as session:
        person = session.scalars(select(Person).where(Person.grid_code == "G1")).first()
        assert person is not None
        person.id_number = "1234"  # short: masked whole
        base = dict(person_id=person.id, kind=TaskKind.HOME_VISIT, grid_code="G1",
                    opened_on=AS_OF, due_on=AS_OF + dt.timedelta(days=30))  # fmt: skip
        session.add_all(
            [
                ReviewTask(**base, status=TaskStatus.OPEN, priority=7.0,
                           reasons={"rule": "弱", "sources": {"transit": [1, 2.5, None]}}),
                ReviewTask(**base, status=TaskStatus.CLAIMED, priority=0.1 + 0.2,
                           claimed_by="w", reasons={},
                           claim_expires_at=now + dt.timedelta(hours=1, microseconds=7)),
                ReviewTask(**base, status=TaskStatus.CLAIMED, priority=-3.0, claimed_by="w",
                           reasons={}, claim_expires_at=now - dt.timedelta(hours=1)),
                ReviewTask(**base, status=TaskStatus.DONE, priority=1e-7, reasons={}),
            ]
        )  # fmt: skip
        last = session.scalars(select(ListEntry).order_by(ListEntry.seq.desc())).first()
        assert last is not None
        high = session.scalar(select(func.max(ListEntry.seq))) or 0
        for offset, status, detail in (
            (1, ListEntryStatus.HELD, {}),
            (2, ListEntryStatus.PUBLISHED, {"approves_seq": high + 1}),
            (4, ListEntryStatus.PUBLISHED, {}),  # after a gap: never returned before it fills
        ):
            session.add(
                ListEntry(
                    seq=high + offset, run_id=last.run_id, person_id=last.person_id,
                    benefit_id=last.benefit_id, action=ListAction.REINSTATE,
                    reason=ListReason.PROOF_OF_LIFE, effective_on=AS_OF,
                    amount=Decimal("-12.50"), status=status, detail=detail,
                )
            )  # fmt: skip
    with world.client:
        yield world
    world.services.engine.dispose()


def _last_audit(world: World) -> AuditEntry:
    with session_scope(world.services.sessions) as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert entry is not None
        return entry


def _audit_count(world: World) -> int:
    with session_scope(world.services.sessions) as session:
        return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"status": "open", "limit": 2, "offset": 1},
        {"status": "claimed"},
        {"status": "done"},
        {"status": "open", "offset": 500},
    ],
)
def test_the_queue_answers_as_the_orm_path(pg_world: World, query: dict[str, Any]) -> None:
    """Same page, total and audit entry as grid_queue with TaskPage, for each status."""
    answer = pg_world.client.get(
        "/api/v1/grids/G1/tasks", params=query, headers=pg_world.auth("grid_worker")
    )
    assert answer.status_code == 200
    status, limit, offset = (
        query.get("status", "open"),
        query.get("limit", 50),
        query.get("offset", 0),
    )
    with session_scope(pg_world.services.sessions) as session:
        rows, total = grid_queue(
            session, grid="G1", status=status, now=utcnow(), today=_today(pg_world),
            limit=limit, offset=offset,
        )  # fmt: skip
    expected = TaskPage(
        items=[TaskRead.model_validate(r) for r in rows], total=total, limit=limit, offset=offset
    )
    assert answer.json() == expected.model_dump(mode="json")
    # Typed alike too: a whole priority stays a float (PostgreSQL alone would write 7, not 7.0).
    assert all(isinstance(item["priority"], float) for item in answer.json()["items"])
    audit = _last_audit(pg_world)
    assert (audit.actor, audit.action, audit.target_type, audit.target_ref) == (
        "grid_worker", "tasks.read", "grid", "G1",
    )  # fmt: skip
    assert audit.detail == {"status": status, "limit": limit, "offset": offset,
                            "returned": len(rows)}  # fmt: skip
    assert audit.remote_addr == "testclient"


def _today(world: World) -> dt.date:
    """Return today in the agency's time zone, as the API takes it."""
    return dt.datetime.now(ZoneInfo(world.services.settings.timezone)).date()


def test_the_queue_puts_visits_planned_for_a_later_week_last(pg_world: World) -> None:
    """Both paths list this week's tasks first: a visit planned later waits, whatever its rank."""
    today = _today(pg_world)
    later = today - dt.timedelta(days=today.weekday()) + dt.timedelta(weeks=2)
    with session_scope(pg_world.services.sessions) as session:
        first = session.scalars(
            select(ReviewTask).where(ReviewTask.grid_code == "G1", ReviewTask.status == "open")
            .order_by(ReviewTask.priority.desc(), ReviewTask.id)
        ).first()  # fmt: skip
        assert first is not None
        first.planned_week = later
        session.flush()
        rows, _ = grid_queue(session, grid="G1", status="open", now=utcnow(), today=today,
                             limit=50, offset=0)  # fmt: skip
        planned = first.id
    try:
        answer = pg_world.client.get("/api/v1/grids/G1/tasks", headers=pg_world.auth("admin"))
    finally:
        with session_scope(pg_world.services.sessions) as session:
            session.get_one(ReviewTask, planned).planned_week = None
    items = answer.json()["items"]
    assert len(items) > 1 and items[-1]["id"] == planned == rows[-1].id
    assert items[-1]["planned_week"] == later.isoformat()
    # The rest by priority, highest first.
    priorities = [item["priority"] for item in items[:-1]]
    assert priorities == sorted(priorities, reverse=True)


def _fields(document: dict[str, Any], items: str, field: str) -> list[tuple[type, Any]]:
    """Return one field of every object of a page, with its JSON type (7.0 is not 7)."""
    return [(type(item[field]), item[field]) for item in document[items]]


@pytest.mark.parametrize("status", ["open", "claimed", "done"])
@pytest.mark.parametrize("field", list(TaskRead.model_fields))
def test_each_task_field_is_written_alike(pg_world: World, field: str, status: str) -> None:
    """Field by field over TaskRead: the one statement writes what the session path writes.

    Parametrised by the schema: a field added to TaskRead is checked here as soon as it is.
    """
    answer = pg_world.client.get(
        "/api/v1/grids/G1/tasks", params={"status": status}, headers=pg_world.auth("admin")
    )
    assert answer.status_code == 200
    with session_scope(pg_world.services.sessions) as session:
        rows, total = grid_queue(session, grid="G1", status=status, now=utcnow(),
                                 today=_today(pg_world), limit=50, offset=0)  # fmt: skip
    expected = TaskPage(
        items=[TaskRead.model_validate(r) for r in rows], total=total, limit=50, offset=0
    )
    assert rows, "the world has tasks of each status in G1"
    assert _fields(answer.json(), "items", field) == _fields(
        json.loads(expected.model_dump_json()), "items", field
    )


@pytest.mark.parametrize("field", list(ListEntryRead.model_fields))
def test_each_entry_field_is_written_alike(pg_world: World, field: str) -> None:
    """Field by field over ListEntryRead, byte for byte: a new field is checked at once."""
    answer = pg_world.client.get(
        "/api/v1/lists/entries", params={"limit": 1000}, headers=pg_world.auth("payment")
    )
    assert answer.status_code == 200
    with session_scope(pg_world.services.sessions) as session:
        entries, _, _ = list_feed(session, after=0, limit=1000)
    expected = [ListEntryRead.model_validate(e).model_dump_json(include={field}) for e in entries]
    written = [
        json.dumps({field: item[field]}, ensure_ascii=False, separators=(",", ":"))
        for item in answer.json()["entries"]
    ]
    assert written == expected
    assert any(item[field] is not None for item in answer.json()["entries"])


def test_the_queue_refuses_a_bad_status_and_a_foreign_grid(pg_world: World) -> None:
    """Validation and scope come before the statement: 422 and 403, only the refusal audited."""
    before = _audit_count(pg_world)
    headers = pg_world.auth("grid_worker")
    bad = pg_world.client.get("/api/v1/grids/G1/tasks?status=nope", headers=headers)
    assert bad.status_code == 422 and "status" in bad.json()["detail"]
    assert pg_world.client.get("/api/v1/grids/G2/tasks", headers=headers).status_code == 403
    assert _audit_count(pg_world) == before + 1
    with session_scope(pg_world.services.sessions) as session:
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
        assert (last.action, last.detail["refused"]) == ("tasks.read.refused", "forbidden")


@pytest.mark.parametrize("after,limit", [(0, 100), (0, 2), (1, 3), (10**6, 5)])
def test_the_feed_answers_as_the_orm_path(pg_world: World, after: int, limit: int) -> None:
    """Same entries, cursor, high water and audit entry as list_feed, stopping at the gap."""
    answer = pg_world.client.get(
        "/api/v1/lists/entries", params={"after": after, "limit": limit},
        headers=pg_world.auth("payment"),
    )  # fmt: skip
    assert answer.status_code == 200
    with session_scope(pg_world.services.sessions) as session:
        entries, next_after, high_water = list_feed(session, after=after, limit=limit)
    expected = ListFeedRead(
        entries=[ListEntryRead.model_validate(e) for e in entries],
        next_after=next_after, high_water=high_water,
    )  # fmt: skip
    assert answer.content == expected.model_dump_json().encode()
    audit = _last_audit(pg_world)
    assert (audit.actor, audit.action, audit.target_type, audit.target_ref) == (
        "payment", "lists.read", "list", None,
    )  # fmt: skip
    assert audit.detail == {
        "after": after, "next_after": next_after, "returned": len(entries),
    }  # fmt: skip


def test_the_hot_statements_are_prepared_and_planned_once(pg_world: World) -> None:
    """ReadPool connections plan the feed once (generically, never per call), without JIT.

    PostgreSQL's default (`auto`) planned the feed afresh on every call, a third of its cost;
    a generic plan's estimate can then pass the JIT threshold, compiling on every call.
    """

    async def plans() -> list[tuple[str, int, int]]:
        reads = ReadPool(pg_world.services.settings.database_url, size=1)
        try:
            async with reads.connection() as connection:
                for setting, value in (("plan_cache_mode", "force_generic_plan"), ("jit", "off")):
                    shown = await (await connection.execute(f"SHOW {setting}")).fetchone()
                    assert shown == (value,)
                with session_scope(pg_world.services.sessions) as session:
                    client_id = session.scalars(
                        select(ApiClient.id).where(ApiClient.name == "payment")
                    ).one()
            principal = Principal(client_id=client_id, name="payment", role=Role.PAYMENT, grids=())
            caller = Caller(
                principal=principal, services=pg_world.services, remote_addr="127.0.0.1",
                reads=reads,
            )  # fmt: skip
            for after in (0, 1, 2):
                await caller.read_once(
                    list_feed_sql(CLIENT_CTE, json_fields(ListEntryRead)),
                    {"after": after, "limit": 2}, target_ref=None, now=utcnow(),
                )  # fmt: skip
            async with reads.connection() as connection:
                cursor = await connection.execute(
                    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                )
                return [(str(s), int(g), int(c)) for s, g, c in await cursor.fetchall()]
        finally:
            reads.close()

    # In a thread of its own: an earlier test (a browser's) may leave this thread a loop.
    with ThreadPoolExecutor(1) as pool:
        rows = pool.submit(asyncio.run, plans()).result()
    feed = [row for row in rows if "list_entries" in row[0]]
    assert len(feed) == 1 and feed[0][1:] == (3, 0)


def test_the_session_rows_name_exactly_the_schema_fields(sqlite_world: World) -> None:
    """The one select behind each hot read labels its columns as the response schema's fields.

    The one-statement path writes the schema's fields from that same select's columns, so a
    field the select lacks or misnames fails here before it fails on PostgreSQL.
    """
    with session_scope(sqlite_world.services.sessions) as session:
        tasks, _ = grid_queue(session, grid="G1", status="open", now=utcnow(),
                              today=_today(sqlite_world), limit=5, offset=0)  # fmt: skip
        entries, _, _ = list_feed(session, after=0, limit=5)
    for rows, schema, extra in (
        (tasks, TaskRead, {"total"}),
        (entries, ListEntryRead, {"status", "high_water"}),
    ):
        assert rows, schema.__name__
        assert set(rows[0]._fields) == set(schema.model_fields) | extra


def test_postgresql_text_inlines_the_code_constants_only() -> None:
    """A JSON key the compiler bound is written as a literal; a named parameter stays one."""
    statement = select(ListEntry.id).where(
        ListEntry.detail["approves_seq"].as_integer() > bindparam("after", type_=Integer)
    )
    sql = postgresql_text(statement, {"after"})
    assert "'approves_seq'" in sql and "%(after)s" in sql
    assert "approves_seq" not in str(statement.compile())  # the statement itself is unchanged


def test_a_session_read_leaves_no_connection_behind(sqlite_world: World) -> None:
    """On the session path the queue and the feed end the session they opened (Caller.run)."""
    for path, role in (("/api/v1/lists/entries", "payment"), ("/api/v1/grids/G1/tasks", "admin")):
        answer = sqlite_world.client.get(path, headers=sqlite_world.auth(role))
        assert answer.status_code == 200
    assert sqlite_world.services.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
