"""The monthly audit sample: at least a policy share of last month's decisions, drawn at random."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.db import query_frame
from liveness.errors import InputInvalid
from models import AuditEntry, ListEntry, Person, ReviewTask, Run, TaskStatus


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """Return the first and last day of a `YYYY-MM` month."""
    first = dt.date.fromisoformat(f"{month}-01")
    following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following - dt.timedelta(days=1)


def month_decisions(session: Session, *, month: str) -> pd.DataFrame:
    """Return the month's decisions: list entries of its runs and review outcomes recorded."""
    first, last = month_bounds(month)
    entries = query_frame(
        session,
        select(
            ListEntry.id,
            Person.person_ref,
            ListEntry.action,
            ListEntry.reason,
            ListEntry.amount,
            ListEntry.caused_by,
        )
        .join(Person, Person.id == ListEntry.person_id)
        .join(Run, Run.id == ListEntry.run_id)
        .where(Run.as_of >= first, Run.as_of <= last)
        # In the list's order: a run by ranges appends its entries range by range, and only
        # then gives them their sequence numbers, so their ids need not follow the list.
        .order_by(ListEntry.seq),
        ["id", "person_ref", "decision", "reason", "amount", "by"],
    ).assign(kind="list_entry")
    outcomes = query_frame(
        session,
        select(ReviewTask.id, Person.person_ref, ReviewTask.outcome, ReviewTask.kind)
        .join(Person, Person.id == ReviewTask.person_id)
        .where(
            ReviewTask.status == TaskStatus.DONE,
            ReviewTask.closed_on >= first,
            ReviewTask.closed_on <= last,
        )
        .order_by(ReviewTask.id),
        ["id", "person_ref", "decision", "reason"],
    ).assign(kind="review_outcome", amount=None, by=None)
    frame = pd.concat([entries, outcomes], ignore_index=True)
    for column in ("decision", "reason"):
        frame[column] = frame[column].astype(object).map(str)
    return frame[["kind", "id", "person_ref", "decision", "reason", "amount", "by"]]


class AuditMonthInvalid(InputInvalid):
    """A month whose audit sample cannot be drawn yet: it is not over."""


def draw_sample(
    session: Session, *, month: str, share: float, actor: str, today: dt.date
) -> pd.DataFrame:
    """Draw at least `share` of the month's decisions for re-checking, and log the draw.

    The draw is seeded by the month, so drawing the same month again gives the same sample;
    only a month that is over can be drawn (during it, its decisions are still being made
    and a later draw would sample others).
    """
    if month_bounds(month)[1] >= today:
        raise AuditMonthInvalid(
            f"--month {month} is not over (today is {today}): its decisions are still being "
            "made; draw its sample once it has ended"
        )
    decisions = month_decisions(session, month=month)
    size = min(len(decisions), math.ceil(share * len(decisions)))
    seed = int.from_bytes(hashlib.sha256(month.encode()).digest()[:8], "big")
    chosen = np.random.default_rng(seed).choice(len(decisions), size=size, replace=False)
    sample = decisions.iloc[np.sort(chosen)].reset_index(drop=True)
    session.add(
        AuditEntry(
            actor=actor,
            action="audit_sample_drawn",
            target_type="month",
            target_ref=month,
            detail={
                "decisions": len(decisions),
                "share": share,
                "sampled": [f"{k}:{i}" for k, i in zip(sample["kind"], sample["id"], strict=True)],
            },
        )
    )
    session.flush()
    return sample
