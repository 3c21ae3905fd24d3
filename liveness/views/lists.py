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
import functools
import hashlib
import io
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from liveness.access.audit import read_audit_cte
from liveness.errors import LivenessError, NotFound
from liveness.views.pg_json import Fields, json_fields_sql
from models import Benefit, ListAck, ListEntry, ListEntryStatus, Person, Run, utcnow


class AckRefused(LivenessError):
    """An acknowledgement beyond what the feed has published, or going backwards."""

    exit_code = 8
    http_status = 409


_COLUMNS = (
    ListEntry.id, ListEntry.seq, ListEntry.run_id, Person.person_ref, Person.id_number,
    Person.name, ListEntry.benefit_id, Benefit.benefit_type, ListEntry.action, ListEntry.reason,
    ListEntry.effective_on, ListEntry.amount, ListEntry.detail, ListEntry.status,
)  # fmt: skip
# The feed's columns, named as the API's `ListEntryRead` (list_feed_sql writes the same).
_FEED_COLUMNS = (
    *_COLUMNS[:12],
    ListEntry.detail["approves_seq"].as_integer().label("approves_seq"),
    ListEntry.status,
)


def list_feed(session: Session, *, after: int, limit: int) -> tuple[list[Row[Any]], int, int]:
    """Return up to `limit` published entries after `after`, in seq order, stopping at a gap.

    Returns the entries (rows carrying the fields of the API's `ListEntryRead` by name), the
    cursor to ask from next and the feed's end right now.
    """
    # The feed's end comes with the page (same statement, same snapshot); an empty page
    # asks for it apart.
    high = select(func.max(ListEntry.seq)).scalar_subquery().label("high_water")
    rows = session.execute(
        select(*_FEED_COLUMNS, high)
        .join(Person, Person.id == ListEntry.person_id)
        .join(Benefit, Benefit.id == ListEntry.benefit_id)
        .where(ListEntry.seq > after)
        .order_by(ListEntry.seq)
        .limit(limit)
    ).all()
    entries: list[Row[Any]] = []
    cursor = after
    for row in rows:
        if row.seq != cursor + 1:
            break  # a number not (yet) visible: never return anything past it
        cursor = row.seq
        if row.status == ListEntryStatus.PUBLISHED:
            entries.append(row)
    high_water = rows[0].high_water if rows else session.scalar(select(func.max(ListEntry.seq)))
    return entries, cursor, int(high_water or 0)


@functools.lru_cache(maxsize=8)
def list_feed_sql(client: str, fields: Fields) -> str:
    """Return the API's feed page as one PostgreSQL statement that also writes its audit.

    The same page as `list_feed`, built as JSON by PostgreSQL (one round trip, no row
    objects), with the response schema's `fields` as keys (liveness.views.pg_json). Rows
    after the cursor are numbered in seq order; row k is contiguous when its seq is
    after + k, and since seq only grows, the contiguous rows are exactly the prefix before
    the first gap that `list_feed` walks. Returns (allowed, entries, next_after,
    high_water), entries being the schema's objects joined by commas. `client` is a CTE
    holding a row iff the caller is still allowed (see api.deps). Parameters: after, limit
    and the audit's (read_audit_cte).
    """
    audit = read_audit_cte(
        action="lists.read", target_type="list",
        detail_sql="json_build_object('after', %(after)s::int, 'next_after', "
        "(SELECT next_after FROM cursor), 'returned', (SELECT count(*) FROM published))",
    )  # fmt: skip
    # The person and the benefit are looked up by primary key, entry by entry, behind an
    # OFFSET 0 fence: the API plans this statement once, without the parameters' values
    # (api.deps.READ_SESSION_SQL), and for a long list the planner's guess at the page size
    # (a tenth of the entries after an unknown cursor) would otherwise make a hash join over
    # the whole roll look cheaper than a hundred lookups.
    return f"""
WITH {client},
ahead AS (
    SELECT e.id, e.seq, e.run_id, pb.person_ref, pb.id_number, pb.name, e.benefit_id,
        pb.benefit_type, e.action, e.reason, e.effective_on, e.amount,
        trunc((e.detail ->> 'approves_seq')::numeric)::bigint AS approves_seq, e.status,
        e.seq - row_number() OVER (ORDER BY e.seq) AS base
    FROM list_entries AS e
    CROSS JOIN LATERAL (
        SELECT p.person_ref, p.id_number, p.name, b.benefit_type
        FROM persons AS p, benefits AS b
        WHERE p.id = e.person_id AND b.id = e.benefit_id
        OFFSET 0
    ) AS pb
    WHERE EXISTS (SELECT FROM client) AND e.seq > %(after)s
    ORDER BY e.seq
    LIMIT %(limit)s
),
walked AS (SELECT * FROM ahead WHERE base = %(after)s),
published AS (SELECT * FROM walked WHERE status = '{ListEntryStatus.PUBLISHED}'),
cursor AS (SELECT coalesce(max(seq), %(after)s) AS next_after FROM walked),
{audit}
SELECT
    EXISTS (SELECT FROM client),
    (SELECT string_agg(row_to_json(x)::text, ',' ORDER BY r.seq)
     FROM published AS r, LATERAL (SELECT {json_fields_sql(fields, "r")}) AS x),
    (SELECT next_after FROM cursor),
    coalesce((SELECT max(seq) FROM list_entries), 0)
"""


def list_feed_body(row: tuple[Any, ...]) -> bytes:
    """Return the JSON `ListFeedRead` of a `list_feed_sql` result row."""
    return (
        b'{"entries":['
        + (row[1] or "").encode()
        + b'],"next_after":%d,"high_water":%d}' % (row[2], row[3])
    )


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
