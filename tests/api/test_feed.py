"""The list feed never skips or repeats an entry while entries are appended, and acks move forward."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import time
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from liveness.db import session_scope
from liveness.lists import append_entries
from models import Benefit, ListAction, ListEntry, ListEntryStatus, ListReason
from tests.api.conftest import World

BATCHES = 25


def _hold(session: Session, sequences: list[int]) -> None:
    """Make each held entry the reinstatement its benefit waits for, as a run would."""
    for entry in session.scalars(
        select(ListEntry).where(
            ListEntry.seq.in_(sequences), ListEntry.status == ListEntryStatus.HELD
        )
    ):
        session.execute(
            update(Benefit)
            .where(Benefit.id == entry.benefit_id)
            .values(
                status="suspended", suspension_reason=ListReason.LAPSED,
                suspended_from=dt.date(2025, 7, 1), suspended_as_of=dt.date(2025, 6, 30),
                held_entry_id=entry.id,
            )
        )  # fmt: skip


def _append_batches(world: World, done: threading.Event, held_ids: list[int]) -> None:
    """Append batches of entries, each transaction pausing before its commit, retrying conflicts."""
    rng = random.Random(7)
    with session_scope(world.services.sessions) as session:
        benefits = list(session.execute(select(Benefit.id, Benefit.person_id)).all())
    try:
        for _ in range(BATCHES):
            size = rng.randint(1, 6)
            rows = [
                {
                    "person_id": person_id, "benefit_id": benefit_id,
                    "action": ListAction.SUSPEND, "reason": ListReason.LAPSED,
                    "effective_on": dt.date(2025, 7, 1), "amount": Decimal("0.00"),
                    "status": ListEntryStatus.HELD if rng.random() < 0.15
                    else ListEntryStatus.PUBLISHED,
                    "caused_by": "operator",
                }
                for benefit_id, person_id in rng.choices(benefits, k=size)
            ]  # fmt: skip
            while True:
                try:
                    with session_scope(world.services.sessions) as session:
                        sequences = append_entries(session, run_id=world.run_id, entries=rows)
                        session.flush()
                        _hold(session, sequences)
                        # Uncommitted entries sit here while the poller reads.
                        time.sleep(rng.uniform(0, 0.03))
                        held = session.scalars(
                            select(ListEntry.id).where(
                                ListEntry.status == ListEntryStatus.HELD,
                                ListEntry.approved_by.is_(None),
                            )
                        ).all()
                    held_ids.extend(i for i in held if i not in held_ids)
                    break
                except (IntegrityError, OperationalError):
                    time.sleep(0.01)  # raced the approver for a number: take the next one
    finally:
        done.set()


def _approve(world: World, done: threading.Event, held_ids: list[int]) -> None:
    """Approve held entries through the API as they appear (approvals append too)."""
    approved: set[int] = set()
    while not done.is_set() or set(held_ids) - approved:
        for entry_id in list(held_ids):
            if entry_id in approved:
                continue
            response = world.client.post(
                f"/api/v1/lists/entries/{entry_id}/approve", headers=world.auth("admin")
            )
            if response.status_code == 200 or "not waiting" in str(response.json()["detail"]):
                approved.add(entry_id)
        time.sleep(0.005)


def test_the_feed_never_skips_or_repeats_while_entries_are_appended(world: World) -> None:
    done = threading.Event()
    held_ids: list[int] = []
    writers = [
        threading.Thread(target=_append_batches, args=(world, done, held_ids)),
        threading.Thread(target=_approve, args=(world, done, held_ids)),
    ]
    for thread in writers:
        thread.start()
    seen: list[int] = []
    after = 0
    polls = 0
    while True:
        finished = not any(thread.is_alive() for thread in writers)
        page = world.client.get(
            "/api/v1/lists/entries", params={"after": after, "limit": 7},
            headers=world.auth("payment"),
        ).json()  # fmt: skip
        polls += 1
        seqs = [entry["seq"] for entry in page["entries"]]
        assert seqs == sorted(seqs) and all(s > after for s in seqs), (after, seqs)
        seen += seqs
        assert page["next_after"] >= after
        after = page["next_after"]
        if finished and after == page["high_water"]:
            break
    for thread in writers:
        thread.join()
    with session_scope(world.services.sessions) as session:
        published = session.scalars(
            select(ListEntry.seq)
            .where(ListEntry.status == ListEntryStatus.PUBLISHED)
            .order_by(ListEntry.seq)
        ).all()
        every = session.scalars(select(ListEntry.seq).order_by(ListEntry.seq)).all()
    assert len(seen) == len(set(seen)), "an entry was repeated"
    assert seen == list(published), "an entry was skipped"
    assert list(every) == list(range(1, len(every) + 1)), "the sequence has a gap"
    assert polls > BATCHES // 2


def test_the_feed_stops_at_a_gap(sqlite_world: World) -> None:
    with session_scope(sqlite_world.services.sessions) as session:
        template = session.scalars(select(ListEntry).where(ListEntry.seq == 1)).one()
        # seq 3 missing: an entry numbered out of order must wait until 3 is visible.
        session.add(
            ListEntry(
                seq=4, run_id=template.run_id, person_id=template.person_id,
                benefit_id=template.benefit_id, action=template.action, reason=template.reason,
                effective_on=template.effective_on, amount=template.amount,
                status=ListEntryStatus.PUBLISHED,
            )
        )  # fmt: skip
    page = sqlite_world.client.get(
        "/api/v1/lists/entries?after=0", headers=sqlite_world.auth("payment")
    ).json()
    assert [e["seq"] for e in page["entries"]] == [1]
    assert page["next_after"] == 2
    assert page["high_water"] == 4


def test_acks_move_forward_only_and_not_beyond_the_feed(sqlite_world: World) -> None:
    ack = "/api/v1/lists/ack"
    headers = sqlite_world.auth("payment")
    assert sqlite_world.client.post(ack, json={"last_seq": 2}, headers=headers).status_code == 200
    assert sqlite_world.client.post(ack, json={"last_seq": 2}, headers=headers).status_code == 200
    assert sqlite_world.client.post(ack, json={"last_seq": 1}, headers=headers).status_code == 409
    beyond = sqlite_world.client.post(ack, json={"last_seq": 99}, headers=headers)
    assert beyond.status_code == 409
    assert "last_seq" in beyond.json()["detail"]
    negative = sqlite_world.client.post(ack, json={"last_seq": -1}, headers=headers)
    assert negative.status_code == 422
    assert negative.json()["detail"][0]["field"] == "last_seq"


def test_the_csv_carries_its_checksum(sqlite_world: World) -> None:
    response = sqlite_world.client.get(
        f"/api/v1/lists/entries.csv?run={sqlite_world.run_id}", headers=sqlite_world.auth("payment")
    )
    assert response.status_code == 200
    assert response.headers["X-Checksum-SHA256"] == hashlib.sha256(response.content).hexdigest()
    lines = response.text.splitlines()
    assert lines[0].startswith("seq,run_id,person_ref,id_number")
    assert len(lines) == 3
    missing = sqlite_world.client.get(
        "/api/v1/lists/entries.csv?run=999", headers=sqlite_world.auth("payment")
    )
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "no run 999"}
