"""List entries: immutable, sequenced lines the payment system applies in order.

A correction is a new entry, never an edit: a reinstatement undoes a suspension. The only
change an entry sees is a second operator's approval or rejection of one that was held.
Entries are made by the payment state machine (`liveness.lists.payment`) alone; this module
reads and stores its states and appends what it decides.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from liveness.errors import NotFound, StateRefused
from liveness.lists.payment import (
    BenefitTerms,
    Occurrence,
    PaymentState,
    PlannedEntry,
    RunTerms,
    fold,
    transition,
)
from models import (
    Benefit,
    BenefitStatus,
    ListAction,
    ListEntry,
    ListEntryStatus,
    ListReason,
    PaymentEvent,
    Run,
    utcnow,
)

IN_CHUNK = 500
CENT = Decimal("0.01")


class ApprovalRefused(StateRefused):
    """A decision on a held entry that separation of duties forbids, or on one not waiting.

    `why` names the refusal for a page to say in words: `not_waiting`, `own_entry` (the
    operator caused it) or `no_reason` (a rejection without a reason).
    """

    audit_refusal = True

    def __init__(self, message: str, *, why: str = "not_waiting") -> None:
        super().__init__(message)
        self.why = why


def next_sequence(session: Session) -> int:
    """Return the next free list sequence number."""
    current = session.scalar(select(func.max(ListEntry.seq)))
    return 1 if current is None else int(current) + 1


def append_entries(session: Session, *, run_id: int, entries: list[dict[str, Any]]) -> list[int]:
    """Append entries in order with the next sequence numbers; return their sequence numbers."""
    if not entries:
        return []
    sequence = next_sequence(session)
    rows = [
        {"run_id": run_id, "caused_by": "system", "detail": {}, **entry, "seq": sequence + offset}
        for offset, entry in enumerate(entries)
    ]
    # Through SQLAlchemy, not `insert_records`' COPY: two writers racing for a sequence
    # number must meet the unique constraint as an IntegrityError their callers retry on.
    session.execute(insert(ListEntry), rows)
    return [row["seq"] for row in rows]


def reorder_entries(session: Session, *, run_id: int, moved: Mapping[int, int]) -> None:
    """Give a run's entries new sequence numbers (`moved`: old to new, a permutation of them).

    A run by partitions appends each partition's entries as it goes, and then puts them in
    the order one run gives them. Through negative numbers, so that no two entries ever share
    one (the constraint is checked row by row).
    """
    if not moved:
        return
    # On the table, not the ORM class: an executemany keyed by sequence number, not by id.
    table = cast(Table, ListEntry.__table__)
    entries = table.c
    session.execute(
        update(table)
        .where(entries.run_id == run_id, entries.seq == bindparam("old"))
        .values(seq=bindparam("new")),
        [{"old": old, "new": -new} for old, new in moved.items()],
    )
    session.execute(
        update(table).where(entries.run_id == run_id, entries.seq < 0)
        .values(seq=-entries.seq)
    )  # fmt: skip


_STATE_COLUMNS = (
    Benefit.id, Benefit.person_id, Benefit.status, Benefit.suspension_reason,
    Benefit.suspended_from, Benefit.suspended_as_of, Benefit.prior_reason, Benefit.unpaid_after,
    Benefit.held_entry_id, Benefit.monthly_amount, Benefit.benefit_start,
)  # fmt: skip


def _state(row: Any) -> PaymentState:
    """Return the payment state stored on a benefit row."""
    return PaymentState(
        status=BenefitStatus(row.status),
        reason=None if row.suspension_reason is None else ListReason(row.suspension_reason),
        suspended_from=row.suspended_from, suspended_as_of=row.suspended_as_of,
        prior_reason=None if row.prior_reason is None else ListReason(row.prior_reason),
        unpaid_after=row.unpaid_after, held=row.held_entry_id is not None,
    )  # fmt: skip


def _state_values(state: PaymentState, held_entry_id: int | None) -> dict[str, Any]:
    """Return the benefit columns that store a payment state."""
    return {
        "status": state.status, "suspension_reason": state.reason,
        "suspended_from": state.suspended_from, "suspended_as_of": state.suspended_as_of,
        "prior_reason": state.prior_reason, "unpaid_after": state.unpaid_after,
        "held_entry_id": held_entry_id if state.held else None,
    }  # fmt: skip


@dataclass(frozen=True)
class _Account:
    """One benefit as the machine sees it: whose it is, its state, its money."""

    person_id: int
    state: PaymentState
    terms: BenefitTerms
    held_entry_id: int | None


def _accounts(session: Session, benefit_ids: list[int]) -> dict[int, _Account]:
    """Return the state and terms of benefits, with the prison payments they never got."""
    accounts: dict[int, _Account] = {}
    for start in range(0, len(benefit_ids), IN_CHUNK):
        chunk = benefit_ids[start : start + IN_CHUNK]
        for row in session.execute(select(*_STATE_COLUMNS).where(Benefit.id.in_(chunk))):
            accounts[row.id] = _Account(
                person_id=row.person_id, state=_state(row),
                terms=BenefitTerms(Decimal(row.monthly_amount), row.benefit_start),
                held_entry_id=row.held_entry_id,
            )  # fmt: skip
    return accounts


def _unpaid_payments(session: Session, benefit_ids: list[int]) -> dict[int, frozenset[dt.date]]:
    """Return, per benefit, the payment days withheld in prison and never paid back."""
    found: dict[int, set[dt.date]] = {}
    for start in range(0, len(benefit_ids), IN_CHUNK):
        chunk = benefit_ids[start : start + IN_CHUNK]
        for benefit_id, detail in session.execute(
            select(ListEntry.benefit_id, ListEntry.detail).where(
                ListEntry.benefit_id.in_(chunk),
                ListEntry.action == ListAction.REINSTATE,
                ListEntry.rejected_by.is_(None),
            )
        ):
            days = (detail or {}).get("unpaid_payments") or []
            found.setdefault(benefit_id, set()).update(dt.date.fromisoformat(d) for d in days)
    return {benefit_id: frozenset(days) for benefit_id, days in found.items()}


def _rejected_on(session: Session, benefit_ids: list[int]) -> dict[int, dt.date]:
    """Return, per benefit whose latest reinstatement was rejected, the day of its evidence.

    The day is the proof of life the rejected entry cited, else its run's date: only a
    proof of life dated after it may reinstate the benefit again.
    """
    latest: dict[int, tuple[int, bool, dict[str, Any], dt.date]] = {}
    for start in range(0, len(benefit_ids), IN_CHUNK):
        chunk = benefit_ids[start : start + IN_CHUNK]
        rows = session.execute(
            select(ListEntry.benefit_id, ListEntry.seq, ListEntry.rejected_by, ListEntry.detail,
                   Run.as_of)
            .join(Run, Run.id == ListEntry.run_id)
            .where(ListEntry.benefit_id.in_(chunk), ListEntry.action == ListAction.REINSTATE)
        )  # fmt: skip
        for benefit_id, seq, rejected_by, detail, as_of in rows:
            if benefit_id not in latest or seq > latest[benefit_id][0]:
                latest[benefit_id] = (seq, rejected_by is not None, detail or {}, as_of)
    return {
        benefit_id: dt.date.fromisoformat(detail["proof_day"]) if detail.get("proof_day")
        else as_of
        for benefit_id, (_, rejected, detail, as_of) in latest.items() if rejected
    }  # fmt: skip


def apply_occurrences(
    session: Session, *, run_id: int, run: RunTerms,
    occurrences: Mapping[int, list[Occurrence]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Fold each benefit's occurrences through the state machine; append and store the result.

    `occurrences` maps benefit ids to their events in the order they apply. Returns the list
    entries appended, in order, each with its sequence number (`seq`).
    """
    if not occurrences:
        return []
    ids = sorted(occurrences)
    accounts = _accounts(session, ids)
    # Only deaths and duplicates look back at what was paid: only they need prison gaps.
    looking_back = {PaymentEvent.DEATH, PaymentEvent.DUPLICATE_IDENTITY}
    unpaid = _unpaid_payments(
        session,
        [b for b in ids if any(o.event in looking_back for o in occurrences[b]) and b in accounts],
    )
    rejected = _rejected_on(
        session,
        [b for b in ids if b in accounts and accounts[b].state.status != BenefitStatus.ACTIVE],
    )
    rows: list[dict[str, Any]] = []
    ends: dict[int, PaymentState] = {}
    for benefit_id in ids:
        account = accounts.get(benefit_id)
        if account is None:
            continue
        terms = replace(
            account.terms, unpaid=unpaid.get(benefit_id, frozenset()),
            rejected_on=rejected.get(benefit_id),
        )  # fmt: skip
        end, planned = fold(account.state, occurrences[benefit_id], benefit=terms, run=run)
        rows += [_entry_row(entry, account.person_id, benefit_id) for entry in planned]
        if end != account.state:
            ends[benefit_id] = end
    sequences = append_entries(session, run_id=run_id, entries=rows)
    for row, seq in zip(rows, sequences, strict=True):
        row["seq"] = seq
    held_seq = {row["benefit_id"]: seq for row, seq in zip(rows, sequences, strict=True)
                if row["status"] == ListEntryStatus.HELD}  # fmt: skip
    held_id = dict(
        session.execute(
            select(ListEntry.seq, ListEntry.id).where(ListEntry.seq.in_(list(held_seq.values())))
        ).all()
    ) if held_seq else {}  # fmt: skip
    if ends:
        session.execute(
            update(Benefit),
            [
                {"id": benefit_id,
                 **_state_values(end, held_id.get(held_seq.get(benefit_id, -1)))}
                for benefit_id, end in ends.items()
            ],
        )  # fmt: skip
    return rows


def _entry_row(entry: PlannedEntry, person_id: int, benefit_id: int) -> dict[str, Any]:
    """Return a planned entry as a list_entries row (without run and sequence)."""
    return {
        "person_id": person_id, "benefit_id": benefit_id, "action": entry.action,
        "reason": entry.reason, "event": entry.event, "effective_on": entry.effective_on,
        "amount": entry.amount.quantize(CENT),
        "status": ListEntryStatus.HELD if entry.held else ListEntryStatus.PUBLISHED,
        "caused_by": entry.caused_by, "detail": entry.detail,
    }  # fmt: skip


def suspended_benefits(session: Session, *where: Any) -> pd.DataFrame:
    """Return the benefits the list suspended: person, benefit, reason, since when, which run.

    Those it terminated after a death too: a proof of life still reinstates them. Benefits
    the roll delivered already suspended or terminated (by the agency's own hand) are not its.
    `where` narrows them (a run's partition: `Context.in_partition(Benefit.person_id)`).
    """
    rows = session.execute(
        select(
            Benefit.person_id, Benefit.id, Benefit.suspension_reason, Benefit.suspended_from,
            Benefit.suspended_as_of,
        ).where(Benefit.status != BenefitStatus.ACTIVE, Benefit.suspension_reason.is_not(None),
                *where)
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows, columns=["person_id", "benefit_id", "reason", "effective_on", "suspended_as_of"]
    )
    frame["reason"] = frame["reason"].astype(object).map(str)
    return frame


REJECTION_REASON_MAX = 500


def _waiting(session: Session, *, entry_id: int, operator: str) -> tuple[ListEntry, Any]:
    """Return a held entry waiting for a second operator's decision, and its benefit's state.

    Refuses an entry not held, already decided, or superseded by a later entry of its benefit,
    and the operator who caused it: whoever caused a held entry decides nothing about it.
    """
    held = session.get(ListEntry, entry_id)
    if held is None:
        raise NotFound(f"no list entry {entry_id}")
    if (
        held.status != ListEntryStatus.HELD
        or held.approved_by is not None
        or held.rejected_by is not None
    ):
        raise ApprovalRefused(f"list entry {entry_id} is not waiting for approval")
    if operator == held.caused_by:
        raise ApprovalRefused(
            f"{operator} caused list entry {entry_id} and may not decide on it: a second "
            "operator must",
            why="own_entry",
        )
    benefit = session.execute(select(*_STATE_COLUMNS).where(Benefit.id == held.benefit_id)).one()
    if benefit.held_entry_id != held.id:
        raise ApprovalRefused(
            f"list entry {entry_id} is not waiting for approval: a later entry of its benefit "
            "superseded it"
        )
    return held, benefit


def approve_entry(session: Session, *, entry_id: int, operator: str) -> ListEntry:
    """Approve a held reinstatement as a second operator: a new, published entry carries it out.

    The held entry stays as it was (entries are immutable) but records its approver, and the
    payment system sees the approval as the next entry of the feed, never as a change behind
    its cursor. The operator who caused the entry may not approve it, and an entry that a
    later event superseded (a death found meanwhile) can no longer be approved.
    """
    held, benefit = _waiting(session, entry_id=entry_id, operator=operator)
    as_of = session.scalar(select(Run.as_of).where(Run.id == held.run_id))
    occurrence = Occurrence(
        PaymentEvent.APPROVAL, caused_by=held.caused_by,
        evidence={
            "reason": str(held.reason), "effective_on": held.effective_on.isoformat(),
            "amount": str(held.amount), "detail": {**held.detail, "approves_seq": held.seq},
        },
    )  # fmt: skip
    # An approval uses nothing of a run but its entry: the held entry's own terms serve.
    terms = RunTerms(
        as_of=as_of or held.effective_on, payment_day=held.effective_on.day,
        four_eyes_back_pay=Decimal(0), terminate_after_death_days=0,
    )  # fmt: skip
    end, planned = transition(
        _state(benefit), occurrence,
        benefit=BenefitTerms(Decimal(benefit.monthly_amount), benefit.benefit_start), run=terms,
    )  # fmt: skip
    if planned is None:  # the benefit's state no longer holds a reinstatement
        raise ApprovalRefused(f"list entry {entry_id} is not waiting for approval")
    held.approved_by = operator
    held.approved_at = utcnow()
    approval = ListEntry(
        seq=next_sequence(session), run_id=held.run_id, person_id=held.person_id,
        benefit_id=held.benefit_id, **{
            k: v for k, v in _entry_row(planned, held.person_id, held.benefit_id).items()
            if k not in ("person_id", "benefit_id")
        },
        approved_by=operator, approved_at=held.approved_at,
    )  # fmt: skip
    session.add(approval)
    session.execute(
        update(Benefit).where(Benefit.id == held.benefit_id).values(**_state_values(end, None))
    )
    session.flush()
    return approval


def reject_entry(session: Session, *, entry_id: int, operator: str, reason: str) -> ListEntry:
    """Reject a held reinstatement as a second operator: the suspension stands, nothing is paid.

    The held entry was never published, so the payment system hears nothing: the entry
    records who rejected it, when and why, and the benefit no longer holds it (as if no
    reinstatement had been made). A later proof of life may make a new one. The same
    operators are refused as for an approval.
    """
    why = " ".join(reason.split())
    if not why:
        raise ApprovalRefused(
            f"a rejection of list entry {entry_id} needs a reason", why="no_reason"
        )
    if len(why) > REJECTION_REASON_MAX:
        raise ApprovalRefused(
            f"a rejection's reason has at most {REJECTION_REASON_MAX} characters", why="no_reason"
        )
    held, benefit = _waiting(session, entry_id=entry_id, operator=operator)
    as_of = session.scalar(select(Run.as_of).where(Run.id == held.run_id))
    terms = RunTerms(
        as_of=as_of or held.effective_on, payment_day=held.effective_on.day,
        four_eyes_back_pay=Decimal(0), terminate_after_death_days=0,
    )  # fmt: skip
    end, planned = transition(
        _state(benefit), Occurrence(PaymentEvent.REJECTION, caused_by=operator),
        benefit=BenefitTerms(Decimal(benefit.monthly_amount), benefit.benefit_start), run=terms,
    )  # fmt: skip
    if planned is not None or end.held:  # the machine must only drop what it held
        raise ApprovalRefused(f"list entry {entry_id} is not waiting for approval")
    held.rejected_by = operator
    held.rejected_at = utcnow()
    held.rejection_reason = why
    session.execute(
        update(Benefit).where(Benefit.id == held.benefit_id).values(**_state_values(end, None))
    )
    session.flush()
    return held
