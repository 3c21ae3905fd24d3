"""Reviews where the risk is: a person whose own traces stop abruptly, or whose P(alive) is low.

Deaths that leave no record are found only when someone looks. The calendar looks once a
cycle; this step looks every night for the two signals that a death may lie behind the
silence: several of a person's regular sources falling silent together (not a source outage:
a degraded source is silent for nobody), and, where the operator lets the run use the learned
estimator, a calibrated probability of being alive below the policy's. Either opens a review
(cause `risk`) before the cycle is due, at most once a cycle. An abrupt stop also holds back
certification by data until the traces resume: the data that would certify is the data that
stopped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.arrays import union_sorted
from liveness.certification import add_months_array, cycle_days, dates_of
from liveness.certification.policy import RiskPolicy
from liveness.certification.workflow.context import Context
from liveness.certification.workflow.estimate import Estimate
from liveness.certification.workflow.frames import frame_in, sorted_ids
from liveness.certification.workflow.proofs import past_proofs
from liveness.evidence.parts import day_number
from liveness.evidence.snapshot import EvidenceSnapshot
from liveness.review.service import open_tasks
from liveness.scoring import ScoringPolicy, fill_reasons
from models import ReviewTask

RISK_CAUSE = "risk"


@dataclass(frozen=True, eq=False)
class Stops:
    """Per roll row, the sources that fell silent and whether that is an abrupt stop."""

    silent: npt.NDArray[np.bool_]  # (persons, sources): regular (or used), silent, not degraded
    stopped: npt.NDArray[np.bool_]  # (persons,): an abrupt stop by either test
    last_day: npt.NDArray[np.int32]  # (persons, sources): the features' last evidence day
    # (persons,): the weight the person's own pace would have left in their silence; NaN
    # where that test did not flag them.
    expected: npt.NDArray[np.float64]
    # (persons,): stopped, or silent past `hold_weight` at their own pace: certified by no data
    # tonight (their review, when due, goes ahead), though no early review opens for it.
    held: npt.NDArray[np.bool_]


def abrupt_stops(
    snapshot: EvidenceSnapshot, *, policy: RiskPolicy, scoring: ScoringPolicy
) -> Stops:
    """Find, from the run's features, whose sources fell silent together.

    A source is silent for a person when none of their traces falls in its last `silent_days`
    due days (a source's last days are not due before its lag: health.toml). It is an abrupt
    stop when at least `min_sources` regular sources (the person's weight over the long window
    reaches `regular_weight`) are silent, or when the person has been silent in every source
    since their last trace anywhere, in at least `min_sources` of them, for at least
    `silent_days` due days in one, and their own pace over the long window would have left at
    least `expected_weight` in that silence. An outage's silence is nobody's: a source
    degraded on some of those days is judged on the `silent_days` before its outage (a person
    silent since long before it still is), and nobody's pace is judged across an outage of a
    source they use. `held` adds, to the stopped, those whose pace makes the same silence
    unusual already, past `hold_weight`, and those silent in due days longer than
    `last_seen_days`: certified by no data until their traces resume, though no review opens
    early for them.
    """
    features = snapshot.features
    n, sources = features.n_persons, scoring.sources
    if not policy.enabled or n == 0:
        empty = np.zeros((n, len(sources)), dtype=np.bool_)
        none = np.zeros(n, dtype=np.bool_)
        return Stops(
            silent=empty, stopped=none, last_day=features.last_day, expected=np.full(n, np.nan),
            held=none,
        )  # fmt: skip
    due = np.array(
        [_judged_until(snapshot, source, days=policy.silent_days) for source in sources],
        dtype=np.int64,
    )
    first = due - policy.silent_days + 1
    quiet = features.last_day < first[None, :]
    regular = features.long_weight >= policy.regular_weight
    by_regular = (regular & quiet).sum(axis=1) >= policy.min_sources
    used = features.long_weight > 0
    expected, silence = _expected_weight(snapshot, due=due, used=used, scoring=scoring)
    long_silence = (silence >= policy.silent_days).any(axis=1) & (
        (silence > 0).sum(axis=1) >= policy.min_sources
    )
    by_pace = (policy.expected_weight > 0) & (expected >= policy.expected_weight) & long_silence
    unusual = (policy.hold_weight > 0) & (expected >= policy.hold_weight) & long_silence
    if policy.last_seen_days > 0:
        # Last seen in due days: the silence since the last trace, in the person's most
        # timely source (a source not yet due for those days could not have seen them).
        unusual |= silence.max(axis=1, initial=0) > policy.last_seen_days
    silent = (regular & quiet) | (by_pace[:, None] & used & (silence > 0))
    stopped = by_regular | by_pace
    return Stops(
        silent=silent, stopped=stopped, last_day=features.last_day,
        expected=np.where(by_pace, expected, np.nan), held=stopped | unusual,
    )  # fmt: skip


def _expected_weight(
    snapshot: EvidenceSnapshot,
    *,
    due: npt.NDArray[np.int64],
    used: npt.NDArray[np.bool_],
    scoring: ScoringPolicy,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return the weight each person's own pace predicts in their silence, and its days.

    The silence begins after the person's last trace in any source; per source it lasts up to
    the source's due day, less its outage days, and the pace is the person's summed weight
    there over the long window per day (`used`: some weight there). Independent sources at
    a steady pace leave nothing in their silences with a chance of e^-expected. Returns per
    person the expected weight, and per person and source the silent due days: none at all
    for a person one of whose sources was degraded during the silence.
    """
    features = snapshot.features
    # Person x source matrices of a million rows: each step in place, as one fresh matrix
    # apiece costs its allocation and page faults (the same values, bit for bit).
    pace = np.true_divide(features.long_weight, scoring.long, dtype=np.float64)
    begins = np.where(used, features.last_day, np.iinfo(np.int32).min).max(axis=1).astype(np.int64)
    silence = due[None, :].astype(np.int64) - begins[:, None]
    np.maximum(silence, 0, out=silence)
    np.multiply(silence, used, out=silence)
    for s, source in enumerate(scoring.sources):
        outage = np.array(sorted(day_number(day) for day in snapshot.outages.get(source, [])))
        if outage.size:
            # A source down during the silence might have spoken: nobody's silence is judged
            # across an outage of a source they use.
            lost = np.searchsorted(outage, due[s], side="right") - np.searchsorted(
                outage, begins, side="right"
            )
            silence[(lost > 0) & used[:, s]] = 0
    expected: npt.NDArray[np.float64] = np.multiply(pace, silence, out=pace).sum(axis=1)
    return expected, silence


def _judged_until(snapshot: EvidenceSnapshot, source: str, *, days: int) -> int:
    """Return the day number up to which a source's silence is judged.

    Its last day whose deliveries are due by the run, or, where it was degraded within the
    `days` before that, the day before that outage began.
    """
    pending = snapshot.health.not_yet_due.get(source)
    last = day_number(snapshot.as_of if pending is None else pending[0] - dt.timedelta(days=1))
    outage = sorted(day_number(day) for day in snapshot.outages.get(source, []))
    while True:
        inside = [day for day in outage if last - days < day <= last]
        if not inside:
            return last
        last = inside[0] - 1


@dataclass(frozen=True, eq=False)
class RiskReviews:
    """Who gets a risk review tonight, with its reasons, and how many each signal flagged."""

    persons: set[int]
    reasons: dict[int, dict[str, Any]]
    abrupt_stop: int
    low_probability: int


# Long by design: the signals, then each exclusion as one column, then the reasons.
def risk_reviews(
    session: Session, context: Context, *, snapshot: EvidenceSnapshot, stops: Stops,
    estimate: Estimate, levels: pd.DataFrame, ends: pd.Series, due: set[int],
    certified: npt.NDArray[np.int64], under_review: pd.DataFrame | None = None,
) -> RiskReviews:  # fmt: skip
    """Return the persons whose risk opens a review tonight, and what each review says.

    `levels` is the roll's assessment in roll order (the dead graded deceased); `ends` each
    person's certification end after tonight's certifications; `due` those whose renewal
    review opens tonight anyway; `certified` those certified tonight, whom no signal flags;
    `under_review` the open tasks (`open_tasks`), if the caller has read them.
    Nobody is flagged who is deceased, under review, proved
    alive since their traces stopped (or, for a low probability, in the last `silent_days`),
    or who had a risk review in their current cycle, except a stopped person due tonight:
    strong but not certified, their renewal review would not open otherwise.
    """
    policy, risk = context.policy, context.policy.risk
    person_id = levels["person_id"].to_numpy(dtype=np.int64)
    below = context.estimator.review_below_probability if context.estimator else 0.0
    low = estimate.probability < below  # NaN (not estimated) is never below
    flagged = (stops.stopped | low) & (levels["level"] != "deceased").to_numpy()
    if not flagged.any():
        return RiskReviews(persons=set(), reasons={}, abrupt_stop=0, low_probability=0)
    if under_review is None:
        under_review = open_tasks(session)
    flagged &= ~np.isin(person_id, union_sorted(sorted_ids(under_review["person_id"]), certified))
    rows = np.flatnonzero(flagged)
    ids = person_id[rows]
    # Proved alive since the traces stopped: the stop is explained (and a low probability
    # by a proof within the silent days).
    proved = _latest_proof_days(session, ids)
    stop_start = np.where(stops.silent[rows], stops.last_day[rows], -1).max(axis=1, initial=-1)
    recent = day_number(context.as_of) - risk.silent_days
    explained = np.where(stops.stopped[rows], proved > stop_start, proved > recent)
    # One risk review a cycle: since the current certification began (or a cycle back).
    months = cycle_days(policy, levels["benefit_type"].iloc[rows], field="valid_months")
    end = dates_of(pd.Series(ids), ends)
    start = add_months_array(
        np.where(np.isnat(end), np.datetime64(context.as_of, "D"), end), -months
    )
    last_risk = dates_of(pd.Series(ids), _latest_risk_reviews(session, ids))
    this_cycle = ~np.isnat(last_risk) & (last_risk >= start)
    renewing = stops.stopped[rows] & np.isin(ids, list(due))
    keep = ~explained & (~this_cycle | renewing)
    rows, ids = rows[keep], ids[keep]
    reasons = _reasons(
        rows, ids, sources=context.scoring.sources, stops=stops, estimate=estimate, low=low,
        levels=levels, silent_days=risk.silent_days, explain=context.explain,
    )  # fmt: skip
    return RiskReviews(
        persons=set(ids.tolist()), reasons=reasons,
        abrupt_stop=int(stops.stopped[rows].sum()), low_probability=int(low[rows].sum()),
    )  # fmt: skip


def _latest_proof_days(session: Session, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Return each person's latest proof of life as a day number (-1 where none)."""
    days = past_proofs(session, ids.tolist())
    found = dates_of(pd.Series(ids), days)
    numbers = (found - np.datetime64("1970-01-01", "D")).astype(np.int64)
    return np.where(np.isnat(found), -1, numbers)


def _latest_risk_reviews(session: Session, ids: npt.NDArray[np.int64]) -> pd.Series:
    """Return, per person, the day their latest risk review opened."""
    rows = frame_in(
        session, ids,
        lambda chunk: select(ReviewTask.person_id, func.max(ReviewTask.opened_on))
        .where(ReviewTask.person_id.in_(chunk), ReviewTask.cause == RISK_CAUSE)
        .group_by(ReviewTask.person_id),
        ["person_id", "opened_on"],
    )  # fmt: skip
    return rows.set_index(rows["person_id"].astype(np.int64))["opened_on"]


def _reasons(
    rows: npt.NDArray[np.intp], ids: npt.NDArray[np.int64], *, sources: tuple[str, ...],
    stops: Stops, estimate: Estimate, low: npt.NDArray[np.bool_], levels: pd.DataFrame,
    silent_days: int, explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None = None,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Return each flagged person's review reasons: their level's, and `risk`.

    `risk` holds, for an abrupt stop, `silent` (per silent source, the day of its last
    trace: silent since the day after) and `silent_days`; for a low probability,
    `probability` and `artifact`.
    """
    out: dict[int, dict[str, Any]] = {}
    # Only the flagged persons' reasons are built (by their position in `levels`).
    level_reasons = dict(
        zip(rows.tolist(), fill_reasons(levels.iloc[rows], explain).tolist(), strict=True)
    )
    epoch = dt.date(1970, 1, 1)
    # Flagged persons are a few a night: a dict each, built from their rows only.
    for row, person in zip(rows.tolist(), ids.tolist(), strict=True):
        risk: dict[str, Any] = {}
        if stops.stopped[row]:
            silent = np.flatnonzero(stops.silent[row])
            risk["silent"] = {
                sources[s]: (epoch + dt.timedelta(days=int(stops.last_day[row, s]))).isoformat()
                for s in silent.tolist()
            }
            risk["silent_days"] = silent_days
            if not np.isnan(stops.expected[row]):
                risk["expected_weight"] = round(float(stops.expected[row]), 1)
        if low[row]:
            risk["probability"] = round(float(estimate.probability[row]), 4)
            risk["artifact"] = estimate.version
        out[person] = {**(level_reasons[row] or {}), "risk": risk}
    return out
