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

from sqlalchemy import (
    ColumnCollection,
    ColumnElement,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from liveness.access.audit import read_audit_cte
from liveness.errors import NotFound, StateRefused
from liveness.views.pg_json import ALLOWED, Fields, json_array, json_objects_sql, postgresql_text
from models import Benefit, ListAck, ListEntry, ListEntryStatus, Person, Run, utcnow


class AckRefused(StateRefused):
    """An acknowledgement beyond what the feed has published, or going backwards."""


# An entry's person and benefit, looked up by primary key.
_OWNED = and_(Person.id == ListEntry.person_id, Benefit.id == ListEntry.benefit_id)
_OWNER = select(Person.person_ref, Person.id_number, Person.name, Benefit.benefit_type).where(
    _OWNED
)
_Column = ColumnElement[Any] | InstrumentedAttribute[Any]
# The parameters of the feed's select; the one-statement path passes no other (list_feed_sql).
FEED_PARAMS = frozenset({"after", "limit"})


def _entry_columns(owner: ColumnCollection[str, Any]) -> tuple[_Column, ...]:
    """Return an entry's columns named as the API's `ListEntryRead`, its owner's from `owner`."""
    return (
        ListEntry.id, ListEntry.seq, ListEntry.run_id, owner.person_ref, owner.id_number,
        owner.name, ListEntry.benefit_id, owner.benefit_type, ListEntry.action, ListEntry.reason,
        ListEntry.effective_on, ListEntry.amount,
        ListEntry.detail["approves_seq"].as_integer().label("approves_seq"), ListEntry.status,
    )  # fmt: skip


def _feed_select(
    owner: ColumnCollection[str, Any], *extra: ColumnElement[Any]
) -> Select[*tuple[Any, ...]]:
    """Return the entries after the parameter `after` in seq order, at most `limit` of them.

    Both ways of serving the feed run this select, with the owner's columns joined as each
    needs (list_feed, list_feed_sql). Bound to the parameters after and limit (FEED_PARAMS).
    """
    return (
        select(*_entry_columns(owner), *extra)
        .where(ListEntry.seq > bindparam("after", type_=Integer))
        .order_by(ListEntry.seq)
        .limit(bindparam("limit", type_=Integer))
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
        _feed_select(_OWNER.selected_columns, high).where(_OWNED),
        {"after": after, "limit": limit},
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

    The select of `list_feed` compiled for PostgreSQL, the page written as JSON by PostgreSQL
    (one round trip, no row objects) with the response schema's `fields` as keys
    (liveness.views.pg_json). Rows after the cursor are numbered in seq order; row k is
    contiguous when its seq is after + k, and since seq only grows, the contiguous rows are
    exactly the prefix before the first gap that `list_feed` walks. Returns (allowed,
    entries, next_after, high_water), entries being the schema's objects joined by commas.
    `client` is a CTE holding a row iff the caller is still allowed (see api.deps).
    Parameters: FEED_PARAMS and the audit's (read_audit_cte).
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
    owner = _OWNER.offset(literal_column("0")).lateral("owner")
    base = (ListEntry.seq - func.row_number().over(order_by=ListEntry.seq)).label("base")
    ahead = (
        _feed_select(owner.c, base).select_from(ListEntry).join(owner, true()).where(text(ALLOWED))
    )
    return f"""
WITH {client},
ahead AS ({postgresql_text(ahead, FEED_PARAMS)}),
walked AS (SELECT * FROM ahead WHERE base = %(after)s),
published AS (SELECT * FROM walked WHERE status = '{ListEntryStatus.PUBLISHED}'),
cursor AS (SELECT coalesce(max(seq), %(after)s) AS next_after FROM walked),
{audit}
SELECT
    {ALLOWED},
    {json_objects_sql("published", fields, "r.seq")},
    (SELECT next_after FROM cursor),
    coalesce((SELECT max(seq) FROM list_entries), 0)
"""


def list_feed_body(row: tuple[Any, ...]) -> bytes:
    """Return the JSON `ListFeedRead` of a `list_feed_sql` result row."""
    cursor = b',"next_after":%d,"high_water":%d}' % (row[2], row[3])
    return b'{"entries":' + json_array(row[1]) + cursor


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
        select(*_entry_columns(_OWNER.selected_columns))
        .where(_OWNED, ListEntry.run_id == run_id)
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
