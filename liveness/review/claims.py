"""Claiming a review task: one claimant at a time, and a claim lapses after a while."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import Session

from liveness.errors import Hidden, NotFound, StateRefused
from models import ReviewTask, TaskKind, TaskStatus


class ClaimRefused(StateRefused):
    """A task someone else holds, or one no longer open."""


def no_task(task_id: int) -> str:
    """Return what the absence of a task says (the same for one outside a caller's grids)."""
    return f"no review task {task_id}"


def claim_task(
    session: Session,
    *,
    task_id: int,
    claimant: str,
    now: dt.datetime,
    minutes: int,
    grids: Sequence[str] | None = None,
) -> ReviewTask:
    """Claim a task until `now + minutes`; exactly one of concurrent claimants wins.

    The claim is one conditional UPDATE, so the database decides the race: the row is taken
    only while it is open, its claim has lapsed, or the claimant already holds it (which
    extends the claim). Under PostgreSQL a second UPDATE waits for the first and re-checks
    the condition on the committed row; SQLite runs writers one at a time. `grids` scopes a
    grid worker: None means any grid.
    """
    condition = and_(
        ReviewTask.id == task_id,
        ReviewTask.kind != TaskKind.FACE_VERIFICATION,
        or_(
            ReviewTask.status == TaskStatus.OPEN,
            and_(
                ReviewTask.status == TaskStatus.CLAIMED,
                or_(ReviewTask.claim_expires_at <= now, ReviewTask.claimed_by == claimant),
            ),
        ),
    )
    if grids is not None:
        condition = and_(condition, ReviewTask.grid_code.in_(list(grids)))
    taken = session.execute(
        update(ReviewTask)
        .where(condition)
        .values(
            status=TaskStatus.CLAIMED,
            claimed_by=claimant,
            claim_expires_at=now + dt.timedelta(minutes=minutes),
        )
        .execution_options(synchronize_session=False)
    )
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(no_task(task_id))
    session.refresh(task)
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return task
    # Lost, or never eligible: say why, most specific first.
    if grids is not None and task.grid_code not in grids:
        raise Hidden(no_task(task_id))  # as if absent: the grid's tasks are not the caller's
    if task.kind == TaskKind.FACE_VERIFICATION:
        raise ClaimRefused(f"task {task_id} is a face verification: its result settles it")
    if task.status == TaskStatus.CLAIMED:
        until = task.claim_expires_at
        raise ClaimRefused(
            f"task {task_id} is claimed by {task.claimed_by}"
            + ("" if until is None else f" until {until:%Y-%m-%d %H:%M} UTC")
        )
    raise ClaimRefused(f"task {task_id} is {task.status}, no longer open")


def ensure_may_settle(
    session: Session,
    *,
    task_id: int,
    actor: str,
    now: dt.datetime,
    grids: Sequence[str] | None = None,
) -> ReviewTask:
    """Refuse an outcome from outside the actor's grids or on a task another claimant holds."""
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(no_task(task_id))
    if grids is not None and task.grid_code not in grids:
        raise Hidden(no_task(task_id))  # as if absent: the grid's tasks are not the caller's
    held = (
        task.status == TaskStatus.CLAIMED
        and task.claimed_by not in (None, actor)
        and task.claim_expires_at is not None
        and task.claim_expires_at > now
    )
    if held:
        raise ClaimRefused(f"task {task_id} is claimed by {task.claimed_by}")
    return task


def release_task(
    session: Session, *, task_id: int, actor: str, any_claimant: bool = False
) -> ReviewTask:
    """Release a claimed task to its queue: only its claimant may, or a supervisor.

    One conditional UPDATE, like the claim, so a release never reopens a task settled or
    claimed anew meanwhile. `any_claimant` lets a supervisor release someone else's claim.
    """
    condition = and_(ReviewTask.id == task_id, ReviewTask.status == TaskStatus.CLAIMED)
    if not any_claimant:
        condition = and_(condition, ReviewTask.claimed_by == actor)
    released = session.execute(
        update(ReviewTask)
        .where(condition)
        .values(status=TaskStatus.OPEN, claimed_by=None, claim_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    task = session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(f"no review task {task_id}")
    session.refresh(task)
    if released.rowcount == 1:  # type: ignore[attr-defined]
        return task
    if task.status != TaskStatus.CLAIMED:
        raise ClaimRefused(f"task {task_id} is {task.status}, not claimed")
    raise ClaimRefused(
        f"task {task_id} is claimed by {task.claimed_by}: only they or a supervisor release it"
    )
