"""Find the strongest moment of each renewal window: the nights no run looked at.

A run grades everyone as of its own night. Where runs are days apart (a weekly or monthly
schedule, a night skipped), a person whose evidence was strong on a night between two runs and
has weakened since (their recent window slid past a trace) would be asked for a review although
the data had certified them on that night. This step grades, as of each night since the
previous published run (on a first run, each night a renewal window back), the persons whose
renewal window was open then and who are not strong tonight, with the same features and
grading as the run itself; whoever was strong by the data alone on any such night is certified
silently, their reasons those of that night. A nightly run has no such nights and reads nothing
here. Only the candidates who could be strong on one of those nights (`could_be_strong`: every
trace of their recent windows counted at once) are graded night by night: a first run at a
million persons takes 97 s instead of 138.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.arrays import union_sorted, unique_sorted
from liveness.certification import cycle_days, dates_of
from liveness.certification.workflow.context import Context
from liveness.evidence.parts import day_number
from liveness.scoring import ScoringPolicy
from liveness.scoring.explain import reasons_frame
from liveness.scoring.features import EvidenceFeatures, compute_features
from liveness.scoring.grade import NO_LEVEL, Grades, grade
from models import Run, RunStatus


def previous_run_day(session: Session, context: Context) -> dt.date | None:
    """Return the night of the latest published run before this one (None on a first run)."""
    return session.scalar(
        select(Run.as_of)
        .where(Run.status == RunStatus.PUBLISHED, Run.as_of < context.as_of,
               Run.id != context.run_id)
        .order_by(Run.as_of.desc())
        .limit(1)
    )  # fmt: skip


def unseen_nights(session: Session, context: Context, *, window_days: int) -> list[dt.date]:
    """Return the nights since the previous published run that no run graded, oldest first.

    None for a nightly run; never more than `window_days` back: older nights lie outside any
    renewal window still open. A first run has all of those: the store holds the history it
    starts on, and a renewal window open before it is the person's as much as one it sees.
    """
    previous = previous_run_day(session, context)
    back = context.as_of - dt.timedelta(days=window_days)
    first = back if previous is None else max(previous + dt.timedelta(days=1), back)
    return [first + dt.timedelta(days=i) for i in range((context.as_of - first).days)]


def strongest_moments(
    session: Session, context: Context, *, candidates: pd.DataFrame, ends: pd.Series,
    scoring: ScoringPolicy,
) -> pd.DataFrame:  # fmt: skip
    """Return the candidates strong by the data on a night of their renewal window no run saw.

    `candidates` has person_id and benefit_type (the living not certified tonight); `ends`
    their certification ends. Returns person_id, benefit_type and reasons (those of the
    latest such night, with `strong_on` naming it).
    """
    window = cycle_days(context.policy, candidates["benefit_type"], field="renewal_window_days")
    # The nights are the policy's, not the candidates': a partition of a run (whose candidates
    # may lack the type of the longest window) looks back as far as the whole run does.
    nights = unseen_nights(session, context, window_days=context.policy.longest_renewal_window)
    empty = candidates.iloc[0:0].assign(reasons=pd.Series(dtype=object))
    if not nights or candidates.empty:
        return empty
    end = dates_of(candidates["person_id"], ends)
    # The first night each candidate's renewal window was open (no certification: any night).
    opens = np.where(np.isnat(end), np.datetime64(nights[0], "D"),
                     end - window.astype("timedelta64[D]"))  # fmt: skip
    in_window = opens <= np.datetime64(nights[-1], "D")
    candidates, opens = candidates[in_window], opens[in_window]
    if candidates.empty:
        return empty
    person_idx, source, kind, day = _traces(
        session, context, persons=candidates["person_id"], scoring=scoring,
        first_day=nights[0] - dt.timedelta(days=scoring.long - 1), last_day=nights[-1],
    )  # fmt: skip
    opens_day = (opens - np.datetime64("1970-01-01", "D")).astype(np.int64)
    first, last = day_number(nights[0]), day_number(nights[-1])
    traces = _Traces(person_idx, source, kind, day, candidates["benefit_type"].to_numpy(), scoring)
    # Only who could be strong on some night is graded night by night (a first run's
    # candidates are a fifth of the roll, and most could not).
    possible = np.flatnonzero(traces.could_be_strong(first=first, last=last))
    if not len(possible):
        return empty
    candidates, opens_day = candidates.iloc[possible], opens_day[possible]
    traces = traces.of(possible)
    day = traces.day
    n = len(candidates)
    best = np.full(n, -1, dtype=np.int64)
    # A person's grade changes only on a night a trace enters a recent window (its day) or
    # the night after it leaves (its day + window): between, it holds. The latest strong night
    # is then the last unseen night or the eve of a leaving, and the earliest of a stretch its
    # first night, a trace's day or the night the renewal window opens. Grading those nights
    # alone is exact; the latest strong night wins.
    dated = day.astype(np.int64)
    leaving = [dated + (window_days - 1) for window_days in scoring.recent_windows]
    turns = union_sorted([first, last], opens_day, dated, *leaving)
    for as_of_day in turns[(turns >= first) & (turns <= last)].tolist():
        strong = traces.graded(as_of_day)[1].certifiable & (opens_day <= as_of_day)
        best[strong] = as_of_day
    found = np.flatnonzero(best >= 0)
    reasons: list[dict[str, object]] = [{}] * n
    for as_of_day in unique_sorted(best[found]).tolist():
        persons = found[best[found] == as_of_day]
        features, grades = traces.graded(as_of_day)
        strong_on = (dt.date(1970, 1, 1) + dt.timedelta(days=as_of_day)).isoformat()
        explained = reasons_frame(
            grades=grades, features=features, as_of_day=as_of_day, policy=scoring,
            post_death=np.zeros(n, dtype=np.int32), persons=persons,
        )  # fmt: skip
        for row, person_reasons in zip(persons.tolist(), explained, strict=True):
            reasons[row] = {**person_reasons, "strong_on": strong_on}
    return candidates.iloc[found].assign(reasons=[reasons[row] for row in found.tolist()])


@dataclass(frozen=True, eq=False)
class _Traces:
    """The candidates' traces as feature arrays, graded as of any night on demand."""

    person_idx: np.ndarray
    source: np.ndarray
    kind: np.ndarray
    day: np.ndarray
    benefit_type: np.ndarray
    scoring: ScoringPolicy

    def graded(self, as_of_day: int) -> tuple[EvidenceFeatures, Grades]:
        """Return the features and grades as of one night, by the data alone (no credit)."""
        n = len(self.benefit_type)
        features = compute_features(
            person_idx=self.person_idx, source_code=self.source, kind_code=self.kind,
            day=self.day, n_persons=n, as_of_day=as_of_day, policy=self.scoring,
        )  # fmt: skip
        grades = grade(
            features=features, benefit_type=self.benefit_type,
            death_day=np.full(n, -1, dtype=np.int32),
            degraded=np.zeros(len(self.scoring.sources), dtype=bool),
            previous_level=np.full(n, NO_LEVEL, dtype=np.int8), policy=self.scoring,
        )  # fmt: skip
        return features, grades

    def could_be_strong(self, *, first: int, last: int) -> npt.NDArray[np.bool_]:
        """Return who could be strong by the data on some night from `first` to `last`.

        Each trace that lies in a recent window of one of those nights is moved to the last
        night, where it lies in every recent window, and everyone is graded as of it: no
        night counts more of a person's traces as recent than that. Strong (a face pass, an
        institution's records, enough agreeing sources) only grows as traces are added, so
        whoever is not strong so is strong on no night. Only while no kind weighs below zero.
        """
        n = len(self.benefit_type)
        if (self.scoring.weight_of_kind < 0).any():
            return np.ones(n, dtype=bool)
        since = first - max(self.scoring.recent_windows) + 1
        moved = np.where(self.day >= since, np.int32(last), self.day).astype(np.int32)
        upper = _Traces(self.person_idx, self.source, self.kind, moved, self.benefit_type,
                        self.scoring)  # fmt: skip
        return upper.graded(last)[1].certifiable

    def of(self, persons: npt.NDArray[np.intp]) -> _Traces:
        """Return the traces of some persons (rows of this), those persons numbered anew."""
        number = np.full(len(self.benefit_type), -1, dtype=np.int32)
        number[persons] = np.arange(len(persons), dtype=np.int32)
        rows = number[self.person_idx] >= 0
        return _Traces(
            number[self.person_idx[rows]], self.source[rows], self.kind[rows], self.day[rows],
            self.benefit_type[persons], self.scoring,
        )  # fmt: skip


def _traces(
    session: Session, context: Context, *, persons: pd.Series, scoring: ScoringPolicy,
    first_day: dt.date, last_day: dt.date,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Return the candidates' linked traces in a window as feature arrays.

    Read as the run reads them (`EvidenceStore.read_window`: corrections applied, kinds coded
    through their dictionary); person indexes are the candidates' rows, unknown kinds dropped.
    """
    index = pd.Index(persons.astype(np.int64).to_numpy())
    # The candidates' range of ids: a partition's reads its row groups of a clustered part.
    span = (int(index.min()), int(index.max()) + 1) if len(index) else None
    parts: list[tuple[np.ndarray, ...]] = []
    for source_code, source_name in enumerate(scoring.sources):
        for window in context.store.read_window(
            session, source=source_name, first_day=first_day, last_day=last_day,
            kinds=scoring.kind_codes(source_name), persons=span,
        ):  # fmt: skip
            rows = index.get_indexer(window.person_id.astype(np.int64))
            keep = (rows >= 0) & (window.kind >= 0)
            parts.append((
                rows[keep].astype(np.int32), np.full(int(keep.sum()), source_code, dtype=np.int8),
                window.kind[keep].astype(np.int16), window.day[keep].astype(np.int32),
            ))  # fmt: skip
    if not parts:
        empty = np.empty(0, dtype=np.int32)
        return empty, empty.astype(np.int8), empty.astype(np.int16), empty
    person_idx, source, kind, day = (np.concatenate(column) for column in zip(*parts, strict=True))
    return person_idx, source, kind, day
