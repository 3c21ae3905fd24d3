"""Death notices pushed by a registry: signed, fresh, once; matched by positive identification."""

from __future__ import annotations

import base64
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from liveness.access import create_client
from liveness.access.signatures import hmac_signature, signed_bytes
from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest.notices import conservative_death_day
from models import (
    AuditEntry,
    DatePrecision,
    DeathNotification,
    DeathRecord,
    ListAction,
    ListEntry,
    Person,
    ReviewTask,
    TaskKind,
    utcnow,
)
from tests.api.conftest import World

URL = "/api/v1/death-notifications"
MONTHLY = Decimal("3000.00")  # every seeded benefit's monthly amount
PAYMENT_DAY = 1  # config/certification.toml [payment] day_of_month


def _paid_after(after: dt.date, until: dt.date) -> int:
    """Count payment days d with after < d <= until, day by day (independent of the engine)."""
    count, day = 0, after + dt.timedelta(days=1)
    while day <= until:
        count += day.day == PAYMENT_DAY
        day += dt.timedelta(days=1)
    return count


def _month_end(day: dt.date) -> dt.date:
    following = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return following - dt.timedelta(days=1)


class Registry:
    """A registrar client of the world: its token and key, and the envelopes it signs."""

    def __init__(self, world: World, name: str = "civil-registry", *, ed25519: bool = False):
        self.world, self.name = world, name
        self.private = Ed25519PrivateKey.generate() if ed25519 else None
        public = None
        if self.private is not None:
            public = (
                self.private.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        with session_scope(world.services.sessions) as session:
            issued = create_client(session, name=name, role="registrar", public_key=public)
        self.token, self.secret = issued.token, issued.secret
        self.sent = 0

    def envelope(
        self, events: list[dict[str, Any]], *, message_id: str | None = None,
        at: dt.datetime | None = None, sender: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Return a signed notify envelope of `events`."""
        self.sent += 1
        header = {
            "message_id": message_id or f"{self.name}-{self.sent}",
            "message_ts": (at or utcnow()).isoformat(), "action": "notify",
            "sender_id": sender or self.name, "receiver_id": "liveness",
            "total_count": len(events),
        }  # fmt: skip
        message = {"events": events}
        payload = signed_bytes(header, message)
        if self.private is not None:
            signature = base64.b64encode(self.private.sign(payload)).decode()
        else:
            assert self.secret is not None
            signature = hmac_signature(self.secret, payload)
        return {"signature": signature, "header": header, "message": message}

    def post(self, envelope: dict[str, Any]) -> Any:
        """Post an envelope as this registrar."""
        return self.world.client.post(
            URL, content=json.dumps(envelope, ensure_ascii=False).encode(),
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"},
        )  # fmt: skip

    def notify(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Send events in one message; return their acknowledgements."""
        response = self.post(self.envelope(list(events)))
        assert response.status_code == 200, response.json()
        acks: list[dict[str, Any]] = response.json()["acknowledgements"]
        return acks


def death(
    world: World, ref: str, *, event: str = "registered", record_id: str | None = None,
    died_on: str = "2025-04-10", registered_on: str = "2025-04-12", **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    """Return an event about `ref`'s death, identified by number, name and birth date."""
    return {
        "event_type": event, "record_id": record_id or f"DR-{ref}",
        "id_number": world.id_numbers[ref], "name": f"张{ref}", "birth_date": "1950-01-01",
        "died_on": died_on, "registered_on": registered_on, **fields,
    }  # fmt: skip


def _entries(world: World, ref: str) -> list[ListEntry]:
    with session_scope(world.services.sessions) as session:
        person = session.scalars(select(Person).where(Person.person_ref == ref)).one()
        rows = session.scalars(
            select(ListEntry).where(ListEntry.person_id == person.id).order_by(ListEntry.seq)
        ).all()
        session.expunge_all()
        return [row for row in rows if row.caused_by != "operator"]  # not the seeded ones


def _death_reviews(world: World, ref: str) -> int:
    with session_scope(world.services.sessions) as session:
        person = session.scalars(select(Person).where(Person.person_ref == ref)).one()
        return len(
            session.scalars(
                select(ReviewTask).where(ReviewTask.person_id == person.id,
                                         ReviewTask.kind == TaskKind.DEATH_REVIEW)
            ).all()
        )  # fmt: skip


def _refusals(world: World) -> list[AuditEntry]:
    with session_scope(world.services.sessions) as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "deaths.notify.refused")
        ).all()
        session.expunge_all()
        return list(rows)


def test_a_signed_notice_suspends_at_the_next_run(world: World) -> None:
    registry = Registry(world)
    [ack] = registry.notify(death(world, "P2"))
    assert ack["outcome"] == "matched" and ack["status"] == "accepted"
    assert "suspended" in ack["next"]
    execute_run(world.services, as_of=dt.date(2025, 6, 30))
    [entry] = _entries(world, "P2")
    assert entry.action == ListAction.SUSPEND
    assert entry.effective_on == dt.date(2025, 4, 11)
    months = _paid_after(_month_end(dt.date(2025, 4, 10)), dt.date(2025, 6, 30))
    assert months == 2
    assert entry.amount == MONTHLY * months
    assert entry.detail["source"] == "registry_notice"
    # Registered 2025-04-12, no second source within 30 days: a death review, the suspension
    # standing meanwhile.
    assert _death_reviews(world, "P2") == 1


def test_a_voided_notice_reinstates_with_back_pay(world: World) -> None:
    registry = Registry(world)
    registry.notify(death(world, "P2"))
    execute_run(world.services, as_of=dt.date(2025, 6, 30))
    [ack] = registry.notify(death(world, "P2", event="voided"))
    assert ack["outcome"] == "withdrawn"
    execute_run(world.services, as_of=dt.date(2025, 7, 31))
    _, reinstate = _entries(world, "P2")
    assert reinstate.action == ListAction.REINSTATE
    assert reinstate.reason == "death_withdrawn"
    withheld = _paid_after(dt.date(2025, 6, 30), dt.date(2025, 7, 31))
    assert withheld == 1
    assert reinstate.amount == MONTHLY * withheld
    assert reinstate.effective_on == dt.date(2025, 8, 1)


def test_a_corrected_date_changes_the_overpayment_by_a_new_entry(world: World) -> None:
    registry = Registry(world)
    registry.notify(death(world, "P2"))
    execute_run(world.services, as_of=dt.date(2025, 6, 30))
    [ack] = registry.notify(death(world, "P2", event="corrected", died_on="2025-02-10"))
    assert ack["outcome"] == "matched" and ack["died_on"] == "2025-02-10"
    execute_run(world.services, as_of=dt.date(2025, 7, 31))
    suspend, amend = _entries(world, "P2")
    assert amend.action == ListAction.AMEND
    assert amend.effective_on == dt.date(2025, 2, 11)
    # Paid up to the run that suspended (June 30): March to June, four months now.
    months = _paid_after(_month_end(dt.date(2025, 2, 10)), dt.date(2025, 6, 30))
    assert amend.amount == MONTHLY * months == Decimal("12000.00")
    assert Decimal(amend.detail["overpayment_before"]) == suspend.amount
    assert Decimal(amend.detail["overpayment_change"]) == amend.amount - suspend.amount
    # The same date again at the next run: nothing more.
    execute_run(world.services, as_of=dt.date(2025, 8, 31))
    assert len(_entries(world, "P2")) == 2


def test_partial_dates_count_from_the_last_day_they_allow(sqlite_world: World) -> None:
    world = sqlite_world
    registry = Registry(world)
    month, year = registry.notify(
        death(world, "P2", died_on="2025-04", registered_on="2025-05-20"),
        death(world, "P3", died_on="2025", registered_on="2025-05-20"),
    )
    assert (month["died_on"], month["died_on_precision"]) == ("2025-04-30", "month")
    # Known only to the year: the registration day bounds it (nobody is registered before).
    assert (year["died_on"], year["died_on_precision"]) == ("2025-05-20", "year")
    execute_run(world.services, as_of=dt.date(2025, 6, 30))
    [p2] = _entries(world, "P2")
    [p3] = _entries(world, "P3")
    assert p2.effective_on == dt.date(2025, 5, 1)
    assert p2.amount == MONTHLY * _paid_after(dt.date(2025, 4, 30), dt.date(2025, 6, 30))
    assert p3.effective_on == dt.date(2025, 5, 21)
    assert p3.amount == MONTHLY * _paid_after(dt.date(2025, 5, 31), dt.date(2025, 6, 30))
    assert p3.amount == MONTHLY


def test_a_notice_dated_off_the_calendar_of_a_life_is_refused_whole(world: World) -> None:
    # What a delivered file's contract refuses row by row, a pushed message is refused for:
    # a death after its registration, a registration after today, a death before the earliest
    # date or before the birth (a death dated 1800 would claim a lifetime of payments back).
    registry = Registry(world)
    cases = {
        "after its registration": ({"died_on": "2025-04-13"}, "died_on: 2025-04-13 is after the "
                                   "death's registration (2025-04-12) (record DR-P2)"),
        "a year after it": ({"died_on": "2026"}, "died_on: 2026 is after the death's"),
        "registered later": ({"registered_on": "2999-01-01"}, "registered_on: 2999-01-01 "
                             "(record DR-P2) is after today"),
        "before 1900": ({"died_on": "1800-01-01"}, "died_on: 1800-01-01 (record DR-P2) is "
                        "before 1900-01-01"),
        "before the birth": ({"died_on": "1949-12-31"}, "died_on: 1949-12-31 (record DR-P2) is "
                             "before the birth_date (1950-01-01)"),
    }  # fmt: skip
    for why, (fields, words) in cases.items():
        refused = registry.post(registry.envelope([death(world, "P2", **fields)]))
        assert refused.status_code == 422, why
        assert refused.json()["detail"].startswith(words), (why, refused.json())
    assert len(_refusals(world)) == len(cases)
    execute_run(world.services, as_of=dt.date(2025, 6, 30))
    assert _entries(world, "P2") == []


def test_conservative_death_day() -> None:
    registered = dt.date(2026, 3, 5)
    assert conservative_death_day("2024-02", registered_on=registered) == (
        dt.date(2024, 2, 29), DatePrecision.MONTH,
    )  # fmt: skip
    assert conservative_death_day("2024", registered_on=registered) == (
        dt.date(2024, 12, 31), DatePrecision.YEAR,
    )  # fmt: skip
    assert conservative_death_day("2026-03", registered_on=registered)[0] == registered
    assert conservative_death_day("2026-03-01", registered_on=registered) == (
        dt.date(2026, 3, 1), DatePrecision.DAY,
    )  # fmt: skip


def test_without_positive_identification_a_review_opens_and_nobody_is_suspended(
    world: World,
) -> None:
    registry = Registry(world)
    no_number = {**death(world, "P3", sex="M"), "id_number": None}
    number_and_name = {**death(world, "P4"), "birth_date": None}
    nobody = {**death(world, "P1", name="李四"), "id_number": None, "record_id": "DR-X"}
    acks = registry.notify(no_number, number_and_name, nobody)
    assert [a["outcome"] for a in acks] == ["ambiguous", "ambiguous", "unknown"]
    assert "review" in acks[0]["next"]
    execute_run(world.services, as_of=dt.date(2025, 6, 30))
    assert _entries(world, "P3") == [] and _entries(world, "P4") == []
    assert _death_reviews(world, "P3") == 1 and _death_reviews(world, "P4") == 1
    assert _entries(world, "P1") == []


def test_bad_signature_stale_timestamp_and_unknown_sender_are_refused(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    registry = Registry(world)
    envelope = registry.envelope([death(world, "P2")])
    tampered = json.loads(json.dumps(envelope))
    tampered["message"]["events"][0]["died_on"] = "2025-01-01"
    assert registry.post(tampered).status_code == 401
    stale = registry.envelope([death(world, "P2")], at=utcnow() - dt.timedelta(hours=2))
    response = registry.post(stale)
    assert response.status_code == 401 and "replay window" in response.json()["detail"]
    other = registry.envelope([death(world, "P2")], sender="someone-else")
    response = registry.post(other)
    assert response.status_code == 401 and "sender_id" in response.json()["detail"]
    unknown = world.client.post(URL, json=envelope, headers={"Authorization": "Bearer lv_nobody"})
    assert unknown.status_code == 401
    # A client of another role (it holds no sender key) is forbidden.
    forbidden = world.client.post(URL, json=envelope, headers=world.auth("verifier"))
    assert forbidden.status_code == 403
    refusals = _refusals(world)
    assert len(refusals) == 4
    assert all(r.detail["status"] in (401, 403) for r in refusals)
    with session_scope(world.services.sessions) as session:
        assert session.scalars(select(DeathRecord)).all() == []


def test_a_message_id_is_idempotent_and_a_replay_with_other_content_refused(
    world: World,
) -> None:
    registry = Registry(world)
    envelope = registry.envelope([death(world, "P2")], message_id="m-1")
    first = registry.post(envelope)
    again = registry.post(envelope)
    assert first.status_code == again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["acknowledgements"] == first.json()["acknowledgements"]
    other = registry.envelope([death(world, "P3")], message_id="m-1")
    response = registry.post(other)
    assert response.status_code == 401 and "message_id" in response.json()["detail"]
    with session_scope(world.services.sessions) as session:
        assert len(session.scalars(select(DeathRecord)).all()) == 1
        assert len(session.scalars(select(DeathNotification)).all()) == 1
    assert len(_refusals(world)) == 1


def test_an_ed25519_sender_and_a_malformed_event(sqlite_world: World) -> None:
    world = sqlite_world
    registry = Registry(world, "hospital-1", ed25519=True)
    assert registry.secret is None
    [ack] = registry.notify(death(world, "P2", region_code="110101", birth_date=None))
    assert ack["outcome"] == "matched"
    bad = registry.envelope([{**death(world, "P3"), "died_on": "10/04/2025"}])
    response = registry.post(bad)
    assert response.status_code == 422
    assert "died_on" in response.json()["detail"]


@pytest.mark.parametrize("field", ["signature", "header"])
def test_an_envelope_without_its_parts_names_them(sqlite_world: World, field: str) -> None:
    registry = Registry(sqlite_world)
    envelope = registry.envelope([death(sqlite_world, "P2")])
    del envelope[field]
    response = registry.post(envelope)
    assert response.status_code == 422
    assert "signature, header and message" in response.json()["detail"]
