"""A certification run as a boundary: one at a time, its state visible, all or nothing.

The run's own work happens in one transaction (`liveness.certification.run.certify`); around it, in
transactions of their own, the lock is taken and released and the run's state is recorded:
`running` before the work, then `published` or `stopped_by_guard` with the work, or `failed`
with the error if the work raised. A run killed outright stays `running` until the next run
finds its lock abandoned and marks it failed.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from liveness.db import WRITES_AHEAD, session_scope
from liveness.errors import RunRefused
from liveness.services import Services
from models import Run, RunLock, RunStatus, utcnow

LOCK_NAME = "certification"


def lock_holder() -> str:
    """Return this process's identity as a lock holder: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _holder_is_dead(holder: str) -> bool:
    """Return whether a holder on this host no longer runs (unknown for other hosts)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire_lock(services: Services, *, holder: str) -> None:
    """Take the run lock, or refuse; an abandoned lock is taken over and its run marked failed."""
    stale_after = dt.timedelta(seconds=services.policies.certification.lock_stale_after_s)
    with session_scope(services.sessions) as session:
        current = session.get(RunLock, LOCK_NAME)
        if current is not None:
            abandoned = _holder_is_dead(current.holder) or (
                utcnow() - current.heartbeat_at > stale_after
            )
            if not abandoned:
                raise RunRefused(
                    f"another run holds the lock ({current.holder}, since "
                    f"{current.acquired_at:%Y-%m-%d %H:%M:%S} UTC); runs go one at a time"
                )
            session.delete(current)
            session.execute(
                update(Run)
                .where(Run.status == RunStatus.RUNNING)
                .values(
                    status=RunStatus.FAILED,
                    finished_at=utcnow(),
                    error=f"interrupted: its process ({current.holder}) ended without finishing",
                )
            )
            session.flush()
        session.add(RunLock(name=LOCK_NAME, holder=holder))
        try:
            session.flush()
        except IntegrityError:
            raise RunRefused("another run took the lock at the same moment") from None


def release_lock(services: Services, *, holder: str) -> None:
    """Give the run lock back (only if this holder has it)."""
    with session_scope(services.sessions) as session:
        session.execute(delete(RunLock).where(RunLock.name == LOCK_NAME, RunLock.holder == holder))


def local_today(services: Services, *, now: dt.datetime | None = None) -> dt.date:
    """Return today's date in the agency's time zone."""
    moment = now or dt.datetime.now(dt.UTC)
    return moment.astimezone(ZoneInfo(services.settings.timezone)).date()


class RunDateRefused(RunRefused):
    """A run dated after today or before the latest published run: waiting does not help."""


def check_run_date(services: Services, *, as_of: dt.date) -> None:
    """Refuse a run dated after today or before the latest published run: runs move forward.

    Rerunning the latest date is allowed (it adds nothing); replaying history is not a run.
    """
    today = local_today(services)
    if as_of > today:
        raise RunDateRefused(
            f"--as-of {as_of.isoformat()} is after today ({today.isoformat()}, "
            f"{services.settings.timezone}): a run cannot be dated in the future"
        )
    with session_scope(services.sessions) as session:
        latest = session.scalar(
            select(Run.as_of).where(Run.status == RunStatus.PUBLISHED).order_by(Run.as_of.desc())
        )
    if latest is not None and as_of < latest:
        raise RunDateRefused(
            f"--as-of {as_of.isoformat()} is before the latest published run "
            f"(as of {latest.isoformat()}): runs move forward; its list would take effect "
            "before entries already published"
        )


def execute_run(
    services: Services,
    *,
    as_of: dt.date,
    override_guard: bool = False,
    checkpoint: Callable[[str], None] | None = None,
) -> Run:
    """Run certification as of `as_of` under the lock, recording its state as it goes.

    A run dated after today or before the latest published run is refused before it starts.
    """
    # The run's work (scoring, the store, pandas) loads here, not with the lock and the list
    # of runs (`liveness runs`).
    from liveness.certification.partitioned import certify_by_partitions
    from liveness.certification.run import certify
    from liveness.memory import return_large_blocks

    # A run's arrays are freed stage after stage: given back, not kept (the peak's third).
    return_large_blocks()
    holder = lock_holder()
    acquire_lock(services, holder=holder)
    try:
        check_run_date(services, as_of=as_of)
        with session_scope(services.sessions) as session:
            run = Run(
                as_of=as_of,
                status=RunStatus.RUNNING,
                policy_version=services.policies.scoring.version,
            )
            session.add(run)
            session.flush()
            run_id = run.id
        try:
            with session_scope(services.sessions) as session:
                # The run reads everything, then writes: on SQLite it holds the write lock
                # from its start, so a writer committing meanwhile waits instead of failing it.
                options: dict[str, Any] = {WRITES_AHEAD: True}
                range_persons = services.settings.run_partition_persons
                if range_persons is not None and session.get_bind().dialect.name == "postgresql":
                    # Partitions read one after another: at REPEATABLE READ every one sees
                    # the state the run began on, whatever commits meanwhile.
                    options["isolation_level"] = "REPEATABLE READ"
                session.connection(execution_options=options)
                work = (
                    certify if range_persons is None
                    else partial(certify_by_partitions, range_persons=range_persons)
                )  # fmt: skip
                run = work(
                    session, as_of=as_of, store=services.store, policies=services.policies,
                    override_guard=override_guard, run=session.get_one(Run, run_id),
                    checkpoint=checkpoint, timezone=services.settings.timezone,
                )  # fmt: skip
            return run
        except BaseException as error:
            with session_scope(services.sessions) as session:
                session.execute(
                    update(Run)
                    .where(Run.id == run_id)
                    .values(
                        status=RunStatus.FAILED,
                        finished_at=utcnow(),
                        error=f"{type(error).__name__}: {error}"[:2000],
                    )
                )
            raise
    finally:
        release_lock(services, holder=holder)


def runs(services: Services, *, limit: int = 20) -> list[Run]:
    """Return the latest runs, newest first."""
    with session_scope(services.sessions) as session:
        return list(session.scalars(select(Run).order_by(Run.id.desc()).limit(limit)))
