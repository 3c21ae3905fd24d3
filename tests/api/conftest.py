"""A small world for the API: persons in two grids, tasks, notices, list entries, a client per role."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from liveness.access import create_client
from liveness.db import session_scope
from liveness.services import Services
from liveness.simulate.identity import compose_id17, full_id_numbers
from models import (
    Assessment,
    Benefit,
    BenefitStatus,
    BenefitType,
    Certification,
    CertificationSource,
    InspectionOrder,
    IntegrityLead,
    LeadAnswer,
    LeadStatus,
    LeadVerdict,
    Level,
    ListAction,
    ListEntry,
    ListEntryStatus,
    ListReason,
    Notice,
    NoticeChannel,
    NoticeStatus,
    OrderStatus,
    Person,
    ReviewTask,
    Role,
    Run,
    RunStatus,
    TaskKind,
    TaskStatus,
)
from tests.liveness.conftest import services_factory  # noqa: F401  (a fixture)

AS_OF = dt.date(2025, 5, 30)
GRIDS = {"P1": "G1", "P2": "G1", "P3": "G1", "P4": "G2", "P5": "G2", "P6": "G1"}
# The inspector's region, and another region whose leads and orders it may not see.
REGION, OTHER_REGION = "330102", "330782"


@dataclass
class World:
    """Services, an app and its client, the ids of what was seeded, a token per role."""

    services: Services
    client: TestClient
    tokens: dict[str, str]
    secret: str
    tasks: dict[str, int] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    notices: dict[str, int] = field(default_factory=dict)
    run_id: int = 0
    id_numbers: dict[str, str] = field(default_factory=dict)
    leads: dict[str, int] = field(default_factory=dict)
    orders: dict[str, int] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        """Return the Authorization header of a role's client."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def signed(
        self, body: dict[str, Any], *, at: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """Return a callback body and its verifier headers, signed now (or at `at`)."""
        raw = json.dumps(body).encode()
        stamp = str(int(time.time() if at is None else at))
        signature = hmac.new(self.secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256)
        return raw, {
            **self.auth("verifier"), "X-Timestamp": stamp, "X-Signature": signature.hexdigest(),
            "Content-Type": "application/json",
        }  # fmt: skip


def _seed(services: Services, world: World) -> None:
    refs = list(GRIDS)
    bodies = compose_id17(
        region=np.full(len(refs), 110101, dtype=np.int64),
        birth_ymd=np.full(len(refs), 19500101, dtype=np.int64),
        seq=np.arange(1, len(refs) + 1, dtype=np.int64) * 2 + 1,
    )
    numbers = full_id_numbers(bodies)
    with session_scope(services.sessions) as session:
        run = Run(as_of=AS_OF, status=RunStatus.PUBLISHED, policy_version="test", report={"x": 1})
        session.add(run)
        persons = {}
        for ref, number in zip(refs, numbers, strict=True):
            person = Person(
                person_ref=ref, id_number=str(number), id_status="valid", name=f"张{ref}", sex="M",
                birth_date=dt.date(1950, 1, 1), region_code="110101", grid_code=GRIDS[ref],
                phone="13800000000",
            )  # fmt: skip
            session.add(person)
            persons[ref] = person
            world.id_numbers[ref] = str(number)
        session.flush()
        benefits = {}
        for ref, person in persons.items():
            benefit = Benefit(
                person_id=person.id, benefit_type=BenefitType.ENTERPRISE_PENSION,
                monthly_amount=Decimal("3000.00"), benefit_start=dt.date(2010, 1, 1),
                status=BenefitStatus.ACTIVE,
            )  # fmt: skip
            session.add(benefit)
            benefits[ref] = benefit
            session.add(
                Assessment(
                    run_id=run.id, person_id=person.id, level=Level.MEDIUM, score=0.5,
                    rule="test", reasons={"why": "test"}, policy_version="test",
                )
            )  # fmt: skip
        session.add(
            Certification(
                person_id=persons["P1"].id, source=CertificationSource.DATA_COMPARISON,
                mark="certified", certified_on=AS_OF, valid_until=dt.date(2026, 5, 30),
                run_id=run.id,
            )
        )  # fmt: skip
        session.flush()

        def task(name: str, ref: str, kind: TaskKind, priority: float) -> None:
            row = ReviewTask(
                person_id=persons[ref].id, kind=kind, status=TaskStatus.OPEN,
                grid_code=GRIDS[ref], priority=priority, opened_on=AS_OF,
                due_on=AS_OF + dt.timedelta(days=30), opened_run_id=run.id,
                reasons={"rule": "weak"},
            )  # fmt: skip
            session.add(row)
            session.flush()
            world.tasks[name] = row.id

        task("visit_g1_low", "P2", TaskKind.HOME_VISIT, 10.0)
        task("visit_g1_high", "P3", TaskKind.HOME_VISIT, 50.0)
        task("visit_g2", "P4", TaskKind.HOME_VISIT, 20.0)
        task("face_g1", "P6", TaskKind.FACE_VERIFICATION, 5.0)
        task("death_g2", "P5", TaskKind.DEATH_REVIEW, 1000.0)
        notice = Notice(
            person_id=persons["P6"].id, task_id=world.tasks["face_g1"], run_id=run.id,
            channel=NoticeChannel.SMS, template="face", body="请刷脸", status=NoticeStatus.PENDING,
            created_on=AS_OF,
        )  # fmt: skip
        session.add(notice)
        for seq, (ref, action, status) in enumerate(
            [("P5", ListAction.SUSPEND, ListEntryStatus.PUBLISHED),
             ("P4", ListAction.REINSTATE, ListEntryStatus.HELD)], start=1,
        ):  # fmt: skip
            entry = ListEntry(
                seq=seq, run_id=run.id, person_id=persons[ref].id, benefit_id=benefits[ref].id,
                action=action, reason=ListReason.DECEASED if seq == 1 else ListReason.PROOF_OF_LIFE,
                effective_on=AS_OF, amount=Decimal("100.00"), status=status,
                caused_by="operator",
            )  # fmt: skip
            session.add(entry)
            session.flush()
            world.entries[f"seq{seq}"] = entry.id
        session.flush()
        world.notices["face"] = notice.id
        world.run_id = run.id
    _seed_integrity(services, world)


def _seed_integrity(services: Services, world: World) -> None:
    """Seed an order per region (one lead answered by an inspector) and an open lead in each."""
    with session_scope(services.sessions) as session:
        orders = {}
        for name, region in (("mine", REGION), ("other", OTHER_REGION)):
            order = InspectionOrder(
                region_code=region, status=OrderStatus.OPEN, due_on=AS_OF + dt.timedelta(days=30),
                issued_by="city",
            )  # fmt: skip
            session.add(order)
            session.flush()
            orders[name] = world.orders[name] = order.id
        leads = [
            ("ordered", "mine", REGION, LeadStatus.ORDERED),
            ("answered", "mine", REGION, LeadStatus.ANSWERED),
            ("spare", "mine", REGION, LeadStatus.ORDERED),
            ("other", "other", OTHER_REGION, LeadStatus.ORDERED),
            ("open_mine", None, REGION, LeadStatus.OPEN),
            ("open_other", None, OTHER_REGION, LeadStatus.OPEN),
        ]
        for index, (name, order_name, region, status) in enumerate(leads):
            lead = IntegrityLead(
                rule="shared_bank_account" if index % 2 == 0 else "same_demographics",
                key=f"k{index}", region_code=region, person_refs=["P1", "P2"],
                evidence={"bank_account": f"62220000{index}"}, amount_at_risk=Decimal("6000.00"),
                status=status, order_id=None if order_name is None else orders[order_name],
                policy_version="test", found_on=AS_OF,
            )  # fmt: skip
            session.add(lead)
            session.flush()
            world.leads[name] = lead.id
        session.add(
            LeadAnswer(
                lead_id=world.leads["answered"], order_id=orders["mine"],
                verdict=LeadVerdict.CONFIRMED, amount_to_recover=Decimal("500.00"),
                answered_by="inspector-x",
            )
        )  # fmt: skip


# Days past due (negative: not due yet) and cause of each seeded review, for the overdue views.
LATE = {
    "visit_g1_low": (40, "renewal"),
    "visit_g1_high": (10, "face_failed"),
    "face_g1": (-5, "renewal"),
    "visit_g2": (60, "face_failed"),
    "death_g2": (3, "death_record"),
}


def make_reviews_late(world: World) -> None:
    """Set the seeded reviews' due dates to LATE's days before today, and their causes."""
    today = dt.datetime.now(ZoneInfo(world.services.settings.timezone)).date()
    with session_scope(world.services.sessions) as session:
        for name, (days, cause) in LATE.items():
            session.execute(
                update(ReviewTask)
                .where(ReviewTask.id == world.tasks[name])
                .values(due_on=today - dt.timedelta(days=days), cause=cause)
            )


def make_world(services: Services) -> World:
    """Seed a database and create one client per role, plus an app and a test client over it."""
    tokens: dict[str, str] = {}
    secret = ""
    with session_scope(services.sessions) as session:
        for role in Role:
            issued = create_client(
                session, name=str(role), role=role,
                grids=["G1"] if role == Role.GRID_WORKER else [],
                regions=[REGION] if role == Role.INSPECTOR else [],
            )  # fmt: skip
            tokens[str(role)] = issued.token
            if role == Role.VERIFIER:
                assert issued.secret is not None
                secret = issued.secret
    app = create_app(services)
    world = World(services=services, client=TestClient(app), tokens=tokens, secret=secret)
    _seed(services, world)
    return world


@contextmanager
def served_world(services: Services, *, follow_redirects: bool = True) -> Iterator[World]:
    """Serve a seeded world over `services` for a test; then let its runs end, and close it."""
    built = make_world(services)
    built.client.follow_redirects = follow_redirects
    with built.client:
        yield built
    built.client.app.state.runs.join(timeout=60)  # type: ignore[attr-defined]
    built.services.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest,
    services_factory: Callable[[str], Services],  # noqa: F811
) -> Iterator[World]:
    """Give a seeded world on each backend."""
    with served_world(services_factory(request.param)) as built:
        yield built


@pytest.fixture
def sqlite_world(services_factory: Callable[[str], Services]) -> Iterator[World]:  # noqa: F811
    """Give a seeded world on SQLite only (for tests whose logic does not depend on the backend)."""
    with served_world(services_factory("sqlite")) as built:
        yield built
