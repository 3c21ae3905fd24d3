"""Recording what a review found: validated, idempotent, applied by the next run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from liveness.errors import InputInvalid, NotFound, StateRefused
from models import (
    LIVE_TASK_STATUSES,
    DeathRecord,
    Person,
    RecordStatus,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)

# A review's `deceased` is kept as a death record of this source, named after its task.
REVIEW_DEATH_SOURCE = "review"


def review_death_record_id(task_id: int) -> str:
    """Return the record id under which a review's death is kept."""
    return f"task-{task_id}"


OUTCOMES_BY_KIND: dict[TaskKind, frozenset[VisitOutcome]] = {
    TaskKind.HOME_VISIT: frozenset(
        {
            VisitOutcome.ALIVE_CONFIRMED,
            VisitOutcome.DECEASED,
            VisitOutcome.MOVED_AWAY,
            VisitOutcome.NOT_FOUND,
            VisitOutcome.REFUSED,
            VisitOutcome.IN_HOSPITAL,
            VisitOutcome.IMPRISONED,
        }
    ),
    TaskKind.DEATH_REVIEW: frozenset(
        {VisitOutcome.ALIVE_CONFIRMED, VisitOutcome.DECEASED, VisitOutcome.NOT_A_DEATH}
    ),
    # Face verifications are settled by their results (traces or callbacks); a grid worker
    # who helped the person through one (assisted) records its result, or turns it into a
    # home visit. A result the verification service gave is never changed by hand.
    TaskKind.FACE_VERIFICATION: frozenset(
        {VisitOutcome.FACE_PASSED, VisitOutcome.FACE_FAILED, VisitOutcome.VISIT_NEEDED}
    ),
}


class OutcomeInvalid(InputInvalid):
    """An outcome that cannot be recorded; the message names the field."""


def _detail(
    outcome: VisitOutcome, *, on: dt.date, died_on: dt.date | None, region: str | None,
    note: str | None, born: dt.date | None,
) -> dict[str, Any]:  # fmt: skip
    """Validate the fields an outcome needs and return them as the task's outcome detail."""
    detail: dict[str, Any] = {"recorded_on": on.isoformat()}
    if outcome == VisitOutcome.DECEASED:
        if died_on is None:
            raise OutcomeInvalid("died_on: a deceased outcome needs the date of death")
        if died_on > on:
            raise OutcomeInvalid("died_on: the date of death is after the visit")
        if born is not None and died_on < born:
            raise OutcomeInvalid(
                f"died_on: the date of death {died_on} is before the person's birth ({born})"
            )
        detail["died_on"] = died_on.isoformat()
    elif died_on is not None:
        raise OutcomeInvalid(f"died_on: only a deceased outcome has a date of death, not {outcome}")
    if outcome == VisitOutcome.MOVED_AWAY:
        if not region or not region.isdigit() or len(region) != 6:
            raise OutcomeInvalid("region: a moved_away outcome needs the 6-digit region code")
        detail["region"] = region
    if note:
        detail["note"] = note[:500]
    return detail


def _check_review_day(on: dt.date, *, opened_on: dt.date, today: dt.date | None) -> None:
    """Refuse a review dated after today or before its task opened (a mistyped year)."""
    # A year typed 2999 would close the task in the future and date a death after every run
    # (none would ever suspend it); one typed 2020 would close it before it existed.
    if today is not None and on > today:
        raise OutcomeInvalid(f"on: the review day {on} is after today ({today})")
    if on < opened_on:
        raise OutcomeInvalid(f"on: the review day {on} is before the task opened ({opened_on})")


def born_on(session: Session, task: ReviewTask) -> dt.date | None:
    """Return the reviewed person's birth date: no death is dated before it."""
    return session.scalar(select(Person.birth_date).where(Person.id == task.person_id))


def record_outcome(
    session: Session,
    *,
    task_id: int,
    outcome: str,
    actor: str,
    on: dt.date,
    died_on: dt.date | None = None,
    region: str | None = None,
    note: str | None = None,
    today: dt.date | None = None,
) -> ReviewTask:
    """Record a review's outcome; recording the same outcome again changes nothing.

    Its effects (certification, suspension, reinstatement) are applied by the next run, so
    that lists only ever change inside a run, all at once. The review happened between the
    task's opening and `today` (the agency's date, given by every entry point; a simulation
    or a replay, whose days are history, gives none).
    """
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(f"no review task {task_id}")
    _check_review_day(on, opened_on=task.opened_on, today=today)
    try:
        chosen = VisitOutcome(outcome)
    except ValueError:
        raise OutcomeInvalid(f"outcome: {outcome!r} is not an outcome") from None
    allowed = OUTCOMES_BY_KIND[TaskKind(task.kind)]
    if chosen not in allowed:
        raise OutcomeInvalid(
            f"outcome: {chosen} is not an outcome of a {task.kind} task; expected one of "
            + ", ".join(sorted(allowed))
        )
    detail = _detail(
        chosen, on=on, died_on=died_on, region=region, note=note, born=born_on(session, task)
    )
    if task.status == TaskStatus.DONE:
        same = task.outcome == chosen and {
            k: v for k, v in task.outcome_detail.items() if k not in ("recorded_on", "by", "undone")
        } == {k: v for k, v in detail.items() if k != "recorded_on"}
        if same:
            return task
        raise OutcomeInvalid(f"outcome: task {task_id} already has the outcome {task.outcome}")
    if task.status not in LIVE_TASK_STATUSES:
        raise OutcomeInvalid(f"outcome: task {task_id} is {task.status}, no longer open")
    undone = task.outcome_detail.get("undone")
    task.status = TaskStatus.DONE
    task.outcome = chosen
    task.outcome_detail = {**detail, "by": actor, **({"undone": undone} if undone else {})}
    task.closed_on = on
    session.flush()
    return task


class UndoRefused(StateRefused):
    """An outcome that can no longer be undone, or not by this person; the message says why."""


def undo_outcome(
    session: Session, *, task_id: int, actor: str, on: dt.date, any_recorder: bool = False
) -> ReviewTask:
    """Withdraw an outcome no run has taken up yet: the task is open again, as if unvisited.

    Only whoever recorded it may, or a supervisor (`any_recorder`); once a run has taken it
    up, only `correct_outcome` changes it, on record. One conditional UPDATE on "no run yet":
    the run locks the outcomes it takes up (workflow.settle._apply_outcomes), so an undo racing a
    run either lands first, and the run never sees the outcome, or finds it taken up.
    The withdrawn outcome stays in the task's detail under `undone`.
    """
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(f"no review task {task_id}")
    if task.status != TaskStatus.DONE or task.outcome is None:
        raise UndoRefused(f"task {task_id} has no recorded outcome to undo")
    if task.closed_run_id is not None:
        raise UndoRefused(
            f"task {task_id}'s outcome was taken up by run {task.closed_run_id}: "
            "a supervisor corrects it now"
        )
    recorded_by = task.outcome_detail.get("by")
    if recorded_by is None:
        raise UndoRefused(f"task {task_id} was settled by its results, not by a person")
    if recorded_by != actor and not any_recorder:
        raise UndoRefused(f"{recorded_by} recorded this outcome: only they or a supervisor undo it")
    withdrawn = {
        **{k: v for k, v in task.outcome_detail.items() if k != "undone"},
        "outcome": str(task.outcome), "undone_by": actor, "undone_on": on.isoformat(),
    }  # fmt: skip
    undone = [*task.outcome_detail.get("undone", []), withdrawn]
    reopened = session.execute(
        update(ReviewTask)
        .where(
            ReviewTask.id == task_id,
            ReviewTask.status == TaskStatus.DONE,
            ReviewTask.outcome == task.outcome,
            ReviewTask.closed_run_id.is_(None),
        )
        .values(
            status=TaskStatus.OPEN,
            outcome=None,
            outcome_detail={"undone": undone},
            closed_on=None,
            claimed_by=None,
            claim_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.refresh(task)
    if reopened.rowcount != 1:  # type: ignore[attr-defined]
        raise UndoRefused(f"task {task_id}'s outcome was taken up by a run meanwhile")
    return task


# Long by design: each refusal checked in turn, then the correction recorded; one rule set.
def correct_outcome(
    session: Session,
    *,
    task_id: int,
    outcome: str,
    actor: str,
    on: dt.date,
    note: str,
    died_on: dt.date | None = None,
    region: str | None = None,
) -> ReviewTask:
    """Correct a recorded outcome on record: a supervisor's word, applied by the next run.

    The correction keeps the visit's day and who recorded it, and appends who corrected it,
    when, why and from what. A corrected `deceased` withdraws the death it made (its death
    record is voided), so the next run undoes its suspension unless another death stands.
    Whoever recorded the outcome may not correct it.
    """
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(f"no review task {task_id}")
    if task.status != TaskStatus.DONE or task.outcome is None:
        raise OutcomeInvalid(f"outcome: task {task_id} has no recorded outcome to correct")
    kind = TaskKind(task.kind)
    try:
        chosen = VisitOutcome(outcome)
    except ValueError:
        raise OutcomeInvalid(f"outcome: {outcome!r} is not an outcome") from None
    allowed = OUTCOMES_BY_KIND[kind]
    if chosen not in allowed:
        raise OutcomeInvalid(
            f"outcome: a {kind} task's outcome is not corrected to {chosen}; expected one of "
            + (", ".join(sorted(allowed)) or "none: its results settle it")
        )
    if not note or not note.strip():
        raise OutcomeInvalid("note: a correction needs its reason, on record")
    recorded_by = task.outcome_detail.get("by")
    if kind == TaskKind.FACE_VERIFICATION and recorded_by is None:
        raise OutcomeInvalid(
            f"outcome: task {task_id} was settled by its face verification result, which is "
            "not corrected by hand"
        )
    if actor == recorded_by:
        raise OutcomeInvalid(f"by: {actor} recorded this outcome; someone else must correct it")
    previous = VisitOutcome(task.outcome)
    if previous == chosen:
        return task
    visited = dt.date.fromisoformat(task.outcome_detail.get("recorded_on", on.isoformat()))
    detail = _detail(
        chosen, on=visited, died_on=died_on, region=region, note=None, born=born_on(session, task)
    )
    corrections = [
        *task.outcome_detail.get("corrections", []),
        {"from": str(previous), "to": str(chosen), "by": actor, "on": on.isoformat(),
         "note": note[:500]},
    ]  # fmt: skip
    task.outcome = chosen
    task.outcome_detail = {**detail, "by": recorded_by, "corrections": corrections}
    # Applied anew by the next run, as any outcome recorded since the last one.
    task.closed_run_id = None
    if previous == VisitOutcome.DECEASED:
        session.execute(
            update(DeathRecord)
            .where(
                DeathRecord.source == REVIEW_DEATH_SOURCE,
                DeathRecord.record_id == review_death_record_id(task_id),
            )
            .values(status=RecordStatus.VOIDED, settled_by=actor, settled_on=on,
                    settlement=f"corrected_to_{chosen}"[:32])
        )  # fmt: skip
    session.flush()
    return task
