"""Certification runs as the API lists them."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.errors import NotFound
from models import Run


def runs_page(session: Session, *, limit: int | None, offset: int) -> tuple[list[Run], int]:
    """Return a page of runs, newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(Run)) or 0
    rows = session.scalars(select(Run).order_by(Run.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total)


def get_run(session: Session, *, run_id: int) -> Run:
    """Return one run, or refuse an unknown id."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run


def running_run_id(session: Session) -> int | None:
    """Return the id of the run in progress (runs go one at a time), if any."""
    return session.scalar(
        select(Run.id).where(Run.status == "running").order_by(Run.id.desc()).limit(1)
    )
