"""One replay of a live history under a policy folder, in a scratch state of its own.

The scratch state is a fresh SQLite database and evidence store in a folder the caller gives;
the live database and store are only read (by `read_history`, before). Between two run dates
the replay does what the live system did: it ingests the deliveries that had arrived, from
their stored files, in the order they arrived; applies the outcomes people recorded; the
messaging gateway sends the notices queued; then it runs certification on the live run's date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from itertools import groupby
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from liveness.certification.runner import execute_run
from liveness.db import query_frame, session_scope
from liveness.errors import ConfigurationError, DeliveryRefused
from liveness.evidence.compaction import compact_store
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.review.outcomes import OUTCOMES_BY_KIND, record_outcome
from liveness.services import Services
from liveness.simulate.responders import send_notices
from liveness.whatif.history import History
from models import LIVE_TASK_STATUSES, Person, ReviewTask, RunStatus, VisitOutcome


@dataclass
class ReplayLog:
    """What the replay could and could not take from the history, and the runs it made."""

    runs: list[int] = field(default_factory=list)
    deliveries_replayed: int = 0
    deliveries_pulled: int = 0
    deliveries_missing: int = 0
    deliveries_unconfigured: int = 0
    deliveries_refused: int = 0
    outcomes_applied: int = 0
    outcomes_without_task: int = 0
    stopped_by_guard: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Return the log's counts as a JSON-able dict (without the scratch run ids)."""
        counts = asdict(self)
        del counts["runs"]
        return counts


def scratch_services(live: Services, *, policy_dir: Path, folder: Path) -> Services:
    """Return services on a fresh SQLite state and evidence store in `folder`, under a policy."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        # A replay starts from nothing: a folder holding a state already would mix two replays.
        raise ConfigurationError(f"{folder}: the replay's scratch folder is not empty")
    settings = live.settings.model_copy(
        update={
            "database_url": f"sqlite:///{folder / 'state.sqlite'}",
            "evidence_dir": folder / "evidence",
            "config_dir": policy_dir,
        }
    )
    services = Services(settings)
    services.policies  # noqa: B018 (a bad policy folder is refused before anything is written)
    upgrade(services.engine)
    return services


def replay(services: Services, history: History) -> ReplayLog:
    """Replay `history` on the scratch `services`: deliveries, outcomes, notices, runs."""
    log = ReplayLog()
    previous_start: dt.datetime | None = None
    previous_as_of: dt.date | None = None
    for as_of, started_at in history.runs.itertuples(index=False):
        _ingest(services, history.deliveries_before(started_at, after=previous_start), log)
        # Outcomes recorded before the first run answer tasks of earlier runs, not replayed.
        if previous_as_of is not None:
            _apply_outcomes(services, history.outcomes_by(as_of, after=previous_as_of), log)
        send_notices(services, by=as_of)
        compact_store(services.sessions, store=services.store)
        run = execute_run(services, as_of=as_of)
        if run.status == RunStatus.STOPPED_BY_GUARD:
            # What the guard would have said is part of the answer; the replay goes on as an
            # operator would once the sources were checked.
            log.stopped_by_guard.append(as_of.isoformat())
            run = execute_run(services, as_of=as_of, override_guard=True)
        log.runs.append(run.id)
        previous_start, previous_as_of = started_at, as_of
    return log


def _ingest(services: Services, deliveries: pd.DataFrame, log: ReplayLog) -> None:
    """Ingest deliveries from their stored files, in arrival order, a source's run at a time."""
    pulled = deliveries["pulled"].to_numpy()
    log.deliveries_pulled += int(pulled.sum())
    files = deliveries[~pulled]
    exists = files["path"].map(lambda path: Path(path).is_file()).astype(bool)
    log.deliveries_missing += int((~exists).sum())
    rows = files[exists.to_numpy()].itertuples(index=False)
    # Consecutive deliveries of one source share an ingest (its indexes built once).
    for (source, form, encoding), group in groupby(
        rows, key=lambda row: (row.source, row.format, row.encoding)
    ):
        paths = [Path(row.path) for row in group]
        if source not in services.source_configs:
            log.deliveries_unconfigured += len(paths)
            continue
        try:
            reports = ingest_paths(
                services, source=source, paths=paths,
                format=None if form == "auto" else form, encoding=encoding,
            )  # fmt: skip
        except DeliveryRefused:
            log.deliveries_refused += len(paths)
            continue
        log.deliveries_replayed += len(reports)
        log.deliveries_refused += sum(report.error is not None for report in reports)


def _apply_outcomes(services: Services, outcomes: pd.DataFrame, log: ReplayLog) -> None:
    """Record each outcome on the replay's open task for its person, if there is one by then.

    The task must accept the outcome (a visit's outcome fits a home visit or a death review,
    an assisted face result a face verification) and have been opened by the day it was
    recorded; a task of the live task's kind is preferred. An outcome for a person the replay
    never asked is counted (`outcomes_without_task`), never applied.
    """
    if outcomes.empty:
        return
    with session_scope(services.sessions) as session:
        open_tasks = query_frame(
            session,
            select(ReviewTask.id, ReviewTask.kind, ReviewTask.opened_on, Person.person_ref)
            .join(Person, Person.id == ReviewTask.person_id)
            .where(ReviewTask.status.in_(LIVE_TASK_STATUSES),
                   Person.person_ref.in_(sorted(set(outcomes["person_ref"]))))
            .order_by(ReviewTask.id),
            ["id", "kind", "opened_on", "person_ref"],
        )  # fmt: skip
        open_tasks["kind"] = open_tasks["kind"].astype(object).map(str)
        taken: set[int] = set()
        for outcome in outcomes.itertuples(index=False):
            task = _matching_task(
                open_tasks, person_ref=outcome.person_ref, kind=outcome.kind,
                outcome=outcome.outcome, on=outcome.on, taken=taken,
            )  # fmt: skip
            if task is None:
                log.outcomes_without_task += 1
                continue
            record_outcome(
                session, task_id=task, outcome=outcome.outcome, actor=outcome.by, on=outcome.on,
                died_on=outcome.died_on, region=outcome.region, note=outcome.note,
            )  # fmt: skip
            taken.add(task)
            log.outcomes_applied += 1


def _matching_task(
    open_tasks: pd.DataFrame, *, person_ref: str, kind: str, outcome: str, on: dt.date,
    taken: set[int],
) -> int | None:  # fmt: skip
    """Return the open task an outcome answers: the person's, accepting it, opened by then."""
    accepts = {
        str(task_kind) for task_kind, allowed in OUTCOMES_BY_KIND.items()
        if VisitOutcome(outcome) in allowed
    }  # fmt: skip
    candidates = open_tasks[
        (open_tasks["person_ref"] == person_ref)
        & open_tasks["kind"].isin(accepts)
        & (pd.to_datetime(open_tasks["opened_on"]) <= pd.Timestamp(on))
        & ~open_tasks["id"].isin(taken)
    ]
    if candidates.empty:
        return None
    same = candidates[candidates["kind"] == kind]
    return int((same if len(same) else candidates)["id"].iloc[0])
