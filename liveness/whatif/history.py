"""What the live system went through in a period: its runs, its deliveries, its recorded outcomes.

Read once from the live state, read only, and handed to each replay unchanged, so that both
policies replay the very same history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select

from liveness.db import query_frame, session_scope
from liveness.errors import InputInvalid
from liveness.services import Services
from models import Delivery, Person, ReviewTask, Run, RunStatus, TaskStatus


class WhatIfInvalid(InputInvalid):
    """A what-if the engine cannot replay: a bad period; the message names the option."""


@dataclass(frozen=True)
class History:
    """The live history of a period: run dates, deliveries as they arrived, recorded outcomes.

    `runs`: as_of and started_at of each published run in the period, oldest first.
    `deliveries`: id, source, path, format, encoding, received_at, pulled (a SQL or HTTP pull
    has no file to read again), in the order they arrived, up to the last run's start.
    `outcomes`: what people recorded on reviews (visits, death reviews, assisted face
    verifications): person_ref, kind, outcome, on, died_on, region, note, by.
    """

    first: dt.date
    last: dt.date
    runs: pd.DataFrame
    deliveries: pd.DataFrame
    outcomes: pd.DataFrame

    def deliveries_before(
        self, started_at: dt.datetime, *, after: dt.datetime | None
    ) -> pd.DataFrame:
        """Return the deliveries received before a run started (and after the previous one)."""
        received = self.deliveries["received_at"]
        chosen = received < started_at
        if after is not None:
            chosen &= received >= after
        return self.deliveries[chosen]

    def outcomes_by(self, as_of: dt.date, *, after: dt.date | None) -> pd.DataFrame:
        """Return the outcomes recorded on or before a run's date (and after the previous run's)."""
        on = self.outcomes["on"]
        chosen = on <= as_of
        if after is not None:
            chosen &= on > after
        return self.outcomes[chosen]


def read_history(services: Services, *, first: dt.date, last: dt.date) -> History:
    """Read the live history of `first`..`last` (only reads: nothing of the live state changes)."""
    if first > last:
        raise WhatIfInvalid(
            f"--from {first.isoformat()} is after --to {last.isoformat()}: the period is empty"
        )
    services.require_schema()
    with session_scope(services.sessions) as session:
        runs = query_frame(
            session,
            select(Run.as_of, Run.started_at)
            .where(Run.status == RunStatus.PUBLISHED, Run.as_of >= first, Run.as_of <= last)
            .order_by(Run.as_of, Run.id),
            ["as_of", "started_at"],
        )
        # A date run twice (a rerun of the latest date adds nothing) is replayed once, from
        # its first publication.
        runs = runs.drop_duplicates("as_of", ignore_index=True)
        if runs.empty:
            raise WhatIfInvalid(
                f"--from {first.isoformat()} --to {last.isoformat()}: the live system published "
                "no run in this period; nothing to replay (`liveness runs` lists them)"
            )
        until = runs["started_at"].iloc[-1]
        deliveries = query_frame(
            session,
            select(Delivery.id, Delivery.source, Delivery.path, Delivery.format,
                   Delivery.encoding, Delivery.received_at)
            .where(Delivery.received_at < until)
            .order_by(Delivery.received_at, Delivery.id),
            ["id", "source", "path", "format", "encoding", "received_at"],
        )  # fmt: skip
        recorded = session.execute(
            select(Person.person_ref, ReviewTask.kind, ReviewTask.outcome, ReviewTask.closed_on,
                   ReviewTask.outcome_detail)
            .join(Person, Person.id == ReviewTask.person_id)
            .where(ReviewTask.status == TaskStatus.DONE, ReviewTask.outcome.is_not(None),
                   ReviewTask.closed_on <= last)
            .order_by(ReviewTask.closed_on, ReviewTask.id)
        ).all()  # fmt: skip
    # A pull's path is where it started (a URL, a table), not a file that can be read again.
    deliveries["pulled"] = deliveries["format"].isin(["sql", "http"])
    # Only what a person recorded (its detail names who): the run's own closings (a face
    # result, a lapse, a task closed by data) are the replay's to make again.
    outcomes = pd.DataFrame(
        [
            {
                "person_ref": ref, "kind": str(kind), "outcome": str(outcome), "on": on,
                "died_on": _date(detail.get("died_on")), "region": detail.get("region"),
                "note": detail.get("note"), "by": detail["by"],
            }
            for ref, kind, outcome, on, detail in recorded
            if isinstance(detail, dict) and detail.get("by")
        ],
        columns=["person_ref", "kind", "outcome", "on", "died_on", "region", "note", "by"],
    )  # fmt: skip
    return History(first=first, last=last, runs=runs, deliveries=deliveries, outcomes=outcomes)


def _date(value: object) -> dt.date | None:
    return dt.date.fromisoformat(value) if isinstance(value, str) else None
