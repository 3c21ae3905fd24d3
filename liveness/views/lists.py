"""The list feed for the payment system: a cursor over sequence numbers that never skips.

Why a reader never skips or repeats an entry. Sequence numbers are assigned as
`max(seq) + 1` inside the writing transaction (`liveness.lists.next_sequence`), under a
unique constraint on `seq`. A transaction can therefore only take N + 1 after it has seen N
committed, or if it holds N itself: a second writer that computed the same N from the same
committed maximum collides on the unique index (PostgreSQL makes it wait for the first and
then fails it; SQLite runs writers one at a time). So the committed sequence numbers are
always a gap-free prefix 1..M, and each transaction's entries appear all at once. A reader
that returns entries after its cursor in seq order sees, at any moment, a prefix of what it
will see later, and never an entry behind a cursor it has already passed.

Runs go one at a time under the run lock, and approvals append through the same
`next_sequence`, so both are covered. The feed does not rely on that argument alone: it
stops at the first gap it meets (a number missing in the middle of the read), so should a
writer ever take numbers out of order (a database sequence, say) the reader waits instead of
skipping. Held entries count as taken numbers: they are walked over, not returned.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.errors import LivenessError, NotFound
from models import Benefit, ListAck, ListEntry, ListEntryStatus, Person, Run, utcnow


class AckRefused(LivenessError):
    """An acknowledgement beyond what the feed has published, or going backwards."""

    exit_code = 8
    http_status = 409


@dataclass(frozen=True)
class FeedEntry:
    """One published entry of the feed, with what the payment system needs to apply it."""

    id: int
    seq: int
    run_id: int
    person_ref: str
    id_number: str
    name: str
    benefit_id: int
    benefit_type: str
    action: str
    reason: str
    effective_on: dt.date
    amount: Decimal
    approves_seq: int | None


@dataclass(frozen=True)
class FeedPage:
    """Entries after a cursor, the cursor to ask from next, and the feed's end right now."""

    entries: list[FeedEntry]
    next_after: int
    high_water: int


_COLUMNS = (
    ListEntry.id, ListEntry.seq, ListEntry.run_id, Person.person_ref, Person.id_number,
    Person.name, ListEntry.benefit_id, Benefit.benefit_type, ListEntry.action, ListEntry.reason,
    ListEntry.effective_on, ListEntry.amount, ListEntry.detail, ListEntry.status,
)  # fmt: skip


def _feed_entry(row: tuple[Any, ...]) -> FeedEntry:
    approves = row[12].get("approves_seq") if isinstance(row[12], dict) else None
    return FeedEntry(
        id=row[0], seq=row[1], run_id=row[2], person_ref=row[3], id_number=row[4], name=row[5],
        benefit_id=row[6], benefit_type=str(row[7]), action=str(row[8]), reason=str(row[9]),
        effective_on=row[10], amount=row[11],
        approves_seq=None if approves is None else int(approves),
    )  # fmt: skip


def list_feed(session: Session, *, after: int, limit: int) -> FeedPage:
    """Return up to `limit` published entries after `after`, in seq order, stopping at a gap."""
    # The feed's end comes with the page (same statement, same snapshot); an empty page
    # asks for it apart.
    high = select(func.max(ListEntry.seq)).scalar_subquery().label("high_water")
    rows = session.execute(
        select(*_COLUMNS, high)
        .join(Person, Person.id == ListEntry.person_id)
        .join(Benefit, Benefit.id == ListEntry.benefit_id)
        .where(ListEntry.seq > after)
        .order_by(ListEntry.seq)
        .limit(limit)
    ).all()
    entries: list[FeedEntry] = []
    cursor = after
    for row in rows:
        if row.seq != cursor + 1:
            break  # a number not (yet) visible: never return anything past it
        cursor = row.seq
        if row.status == ListEntryStatus.PUBLISHED:
            entries.append(_feed_entry(tuple(row)))
    high_water = rows[0].high_water if rows else session.scalar(select(func.max(ListEntry.seq)))
    return FeedPage(entries=entries, next_after=cursor, high_water=int(high_water or 0))


def acknowledge(session: Session, *, client: str, last_seq: int) -> ListAck:
    """Record the last sequence a payment client applied; it only moves forward."""
    published = session.scalar(select(func.max(ListEntry.seq))) or 0
    if last_seq > published:
        raise AckRefused(f"last_seq: {last_seq} is beyond the last entry ({published})")
    ack = session.get(ListAck, client)
    if ack is None:
        ack = ListAck(client=client, last_seq=last_seq, acked_at=utcnow())
        session.add(ack)
    elif last_seq < ack.last_seq:
        raise AckRefused(
            f"last_seq: {last_seq} is behind the acknowledged {ack.last_seq}; acks move forward"
        )
    else:
        ack.last_seq = last_seq
        ack.acked_at = utcnow()
    session.flush()
    return ack


CSV_HEADER = (
    "seq", "run_id", "person_ref", "id_number", "name", "benefit_id", "benefit_type", "action",
    "reason", "effective_on", "amount", "status",
)  # fmt: skip


def entries_csv(session: Session, *, run_id: int) -> tuple[bytes, str, int]:
    """Return a run's entries as UTF-8 CSV, its SHA-256 hex digest and its row count."""
    if session.get(Run, run_id) is None:
        raise NotFound(f"no run {run_id}")
    rows = session.execute(
        select(*_COLUMNS)
        .join(Person, Person.id == ListEntry.person_id)
        .join(Benefit, Benefit.id == ListEntry.benefit_id)
        .where(ListEntry.run_id == run_id)
        .order_by(ListEntry.seq)
    ).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow(
            [
                row.seq, row.run_id, row.person_ref, row.id_number, row.name, row.benefit_id,
                str(row.benefit_type), str(row.action), str(row.reason),
                row.effective_on.isoformat(), f"{row.amount:.2f}", str(row.status),
            ]
        )  # fmt: skip
    body = out.getvalue().encode("utf-8")
    return body, hashlib.sha256(body).hexdigest(), len(rows)
