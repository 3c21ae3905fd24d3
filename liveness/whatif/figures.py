"""The figures of one replay, read from its scratch state: what a policy did over the period."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select

from liveness.db import query_frame, session_scope
from liveness.services import Services
from models import (
    LIVE_TASK_STATUSES,
    Benefit,
    Certification,
    CertificationSource,
    DeathMatch,
    DeathRecord,
    ListAction,
    ListEntry,
    RecordStatus,
    ReviewTask,
    Run,
    TaskKind,
    VisitOutcome,
)

LEVELS = ("strong", "medium", "weak", "deceased")
FEN = Decimal("0.01")


def measure(
    services: Services, *, run_ids: list[int], last: dt.date, payment_day: int
) -> dict[str, Any]:
    """Return a replay's figures: per run, per grid, deaths, wrong suspensions, money.

    `last` ends the period (deaths after it are not counted, payments after it not made);
    `payment_day` is the payment calendar's day of the month (the live one, for both sides).
    """
    with session_scope(services.sessions) as session:
        runs: list[tuple[int, dt.date, dict[str, Any]]] = [
            (row.id, row.as_of, row.report)
            for row in session.execute(
                select(Run.id, Run.as_of, Run.report).where(Run.id.in_(run_ids)).order_by(Run.as_of)
            )
        ]
        tasks = query_frame(
            session,
            select(ReviewTask.kind, ReviewTask.status, ReviewTask.outcome, ReviewTask.grid_code,
                   ReviewTask.opened_run_id).where(ReviewTask.opened_run_id.in_(run_ids)),
            ["kind", "status", "outcome", "grid_code", "run_id"],
        )  # fmt: skip
        silent = query_frame(
            session,
            select(Certification.run_id).where(
                Certification.run_id.in_(run_ids),
                Certification.source == CertificationSource.DATA_COMPARISON,
            ),
            ["run_id"],
        )
        entries = query_frame(
            session,
            select(ListEntry.person_id, ListEntry.run_id, ListEntry.action, Run.as_of)
            .join(Run, Run.id == ListEntry.run_id)
            .where(ListEntry.run_id.in_(run_ids))
            .order_by(ListEntry.seq),
            ["person_id", "run_id", "action", "as_of"],
        )
        deaths = query_frame(
            session,
            select(DeathRecord.person_id, DeathRecord.died_on).where(
                DeathRecord.person_id.is_not(None),
                DeathRecord.status == RecordStatus.ACTIVE,
                DeathRecord.match.in_([DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC]),
                DeathRecord.died_on <= last,
            ),
            ["person_id", "died_on"],
        )
        benefits = query_frame(
            session, select(Benefit.person_id, Benefit.monthly_amount),
            ["person_id", "monthly_amount"],
        )  # fmt: skip
    for frame, column in ((tasks, "kind"), (tasks, "status"), (tasks, "outcome"),
                          (entries, "action")):  # fmt: skip
        frame[column] = frame[column].astype(object).map(lambda v: None if v is None else str(v))
    first_as_of = runs[0][1] if runs else last
    return {
        "runs": _per_run(runs, tasks=tasks, silent=silent, entries=entries),
        "totals": _totals(tasks, silent=silent, entries=entries),
        "grids": _per_grid(tasks),
        "deaths": _deaths(deaths, entries=entries, first_as_of=first_as_of),
        "suspended_then_proved_alive": _proved_alive(entries),
        # Why an enabled estimator certified nobody (no artifact in the replay, one too weak):
        # without it, a candidate enabling it looks the same as the live policy, unexplained.
        "estimator_notes": sorted(
            {
                note
                for _, _, report in runs
                for note in (report.get("estimator") or {}).get("notes", [])
            }
        ),
        "paid_after_death": str(
            _paid_after_death(
                deaths, entries=entries, benefits=benefits, last=last, payment_day=payment_day
            )
        ),
    }


def _per_run(
    runs: list[tuple[int, dt.date, dict[str, Any]]],
    *,
    tasks: pd.DataFrame,
    silent: pd.DataFrame,
    entries: pd.DataFrame,
) -> list[dict[str, Any]]:
    """Return each run's levels, reviews opened, silent certifications and suspensions."""
    opened = tasks.groupby(["run_id", "kind"]).size()
    certified = silent.groupby("run_id").size()
    suspended = entries[entries["action"] == str(ListAction.SUSPEND)].groupby("run_id").size()
    rows = []
    for run_id, as_of, report in runs:
        levels = report.get("levels", {})
        rows.append(
            {
                "as_of": as_of.isoformat(),
                **{level: int(levels.get(level, 0)) for level in LEVELS},
                "face_requests": int(opened.get((run_id, str(TaskKind.FACE_VERIFICATION)), 0)),
                "home_visits": int(opened.get((run_id, str(TaskKind.HOME_VISIT)), 0)),
                "death_reviews": int(opened.get((run_id, str(TaskKind.DEATH_REVIEW)), 0)),
                "silent_certifications": int(certified.get(run_id, 0)),
                "certified_by_estimator": int(report.get("certified_by_estimator", 0)),
                "suspensions": int(suspended.get(run_id, 0)),
            }
        )
    return rows


def _unanswered(tasks: pd.DataFrame) -> pd.Series:
    """Mark the reviews nothing answered: face requests that lapsed, visits still open."""
    lapsed = (tasks["kind"] == str(TaskKind.FACE_VERIFICATION)) & (
        tasks["outcome"] == str(VisitOutcome.LAPSED)
    )
    still_open = tasks["kind"].isin([str(TaskKind.HOME_VISIT), str(TaskKind.DEATH_REVIEW)]) & (
        tasks["status"].isin([str(status) for status in LIVE_TASK_STATUSES])
    )
    return lapsed | still_open


def _totals(tasks: pd.DataFrame, *, silent: pd.DataFrame, entries: pd.DataFrame) -> dict[str, int]:
    """Return the period's totals of reviews, silent certifications and list entries."""
    kinds = tasks["kind"]
    return {
        "face_requests": int((kinds == str(TaskKind.FACE_VERIFICATION)).sum()),
        "home_visits": int((kinds == str(TaskKind.HOME_VISIT)).sum()),
        "death_reviews": int((kinds == str(TaskKind.DEATH_REVIEW)).sum()),
        "unanswered": int(_unanswered(tasks).sum()),
        "silent_certifications": len(silent),
        "suspensions": int((entries["action"] == str(ListAction.SUSPEND)).sum()),
        "reinstatements": int((entries["action"] == str(ListAction.REINSTATE)).sum()),
    }


def _per_grid(tasks: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Return the face requests and home visits each grid was given over the period."""
    kinds = {"face_requests": TaskKind.FACE_VERIFICATION, "home_visits": TaskKind.HOME_VISIT}
    counts = (
        tasks[tasks["kind"].isin([str(kind) for kind in kinds.values()])]
        .groupby(["grid_code", "kind"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=[str(kind) for kind in kinds.values()], fill_value=0)
        .sort_index()
    )
    names = dict(zip([str(kind) for kind in kinds.values()], kinds, strict=True))
    return {
        str(grid): {names[column]: int(row[column]) for column in counts.columns}
        for grid, row in counts.iterrows()
    }


def _first_suspensions(entries: pd.DataFrame) -> pd.Series:
    """Return each suspended person's first suspension date (its run's as_of)."""
    suspended = entries[entries["action"] == str(ListAction.SUSPEND)]
    return pd.to_datetime(suspended.groupby("person_id")["as_of"].min())


def _deaths(deaths: pd.DataFrame, *, entries: pd.DataFrame, first_as_of: dt.date) -> dict[str, Any]:
    """Count the matched deaths, those suspended, and the days from death to suspension.

    Days are measured for the deaths after the first run: those before it were a backlog
    the first run inherited, not a measure of the policy's speed.
    """
    died = pd.to_datetime(deaths.groupby("person_id")["died_on"].min())
    suspended_on = _first_suspensions(entries).reindex(died.index)
    caught = suspended_on.notna() & (suspended_on >= died)
    later = died > pd.Timestamp(first_as_of)
    days = (suspended_on - died).dt.days[caught & later]
    return {
        "matched": len(died),
        "caught": int(caught.sum()),
        "after_first_run": int(later.sum()),
        "after_first_run_caught": len(days),
        "median_days": round(float(days.median()), 1) if len(days) else None,
        "p95_days": round(float(days.quantile(0.95)), 1) if len(days) else None,
    }


def _proved_alive(entries: pd.DataFrame) -> int:
    """Count the persons suspended in the period and reinstated after it (proof of life)."""
    first = _first_suspensions(entries)
    reinstated = entries[entries["action"] == str(ListAction.REINSTATE)]
    after = (
        pd.to_datetime(reinstated["as_of"]).to_numpy()
        >= first.reindex(reinstated["person_id"]).to_numpy()
    )
    return int(reinstated.loc[after, "person_id"].nunique())


def _paid_after_death(
    deaths: pd.DataFrame, *, entries: pd.DataFrame, benefits: pd.DataFrame, last: dt.date,
    payment_day: int,
) -> Decimal:  # fmt: skip
    """Return what was paid for the months after each matched death until payment stopped.

    Benefits are paid monthly in advance on `payment_day` (`liveness.lists.payment.days`):
    each payment day after the month of death, up to the person's first suspension or the
    end of the period, paid their monthly amounts to nobody entitled.
    """
    died = pd.to_datetime(deaths.groupby("person_id")["died_on"].min())
    if died.empty:
        return Decimal("0.00")
    stopped = _first_suspensions(entries).reindex(died.index).fillna(pd.Timestamp(last))
    until = stopped.clip(upper=pd.Timestamp(last))
    # Payment days d with month_end(died) < d <= until: the months after the month of death
    # up to until's month, less until's own when its payment day has not come yet.
    months = (until.dt.year * 12 + until.dt.month) - (died.dt.year * 12 + died.dt.month)
    months = (months - (until.dt.day < payment_day).astype(int)).clip(lower=0)
    monthly = benefits.groupby("person_id")["monthly_amount"].agg(
        lambda amounts: sum((Decimal(str(a)) for a in amounts), Decimal("0"))
    )
    owed = monthly.reindex(died.index).fillna(Decimal("0"))
    total = sum(
        (
            amount * int(count)
            for amount, count in zip(owed, months.to_numpy(np.int64), strict=True)
        ),
        Decimal("0"),
    )
    return Decimal(total).quantize(FEN)
