"""Runs as a boundary: one at a time, states recorded, and a run killed anywhere publishes nothing."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import OperationalError

from liveness.certification.runner import LOCK_NAME, acquire_lock, execute_run
from liveness.db import session_scope
from liveness.errors import RunRefused
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from liveness.settings import Settings
from models import Assessment, ListEntry, Person, Run, RunLock, RunStatus
from tests.liveness.conftest import REPO
from tests.liveness.test_run import AS_OF

# Scheduling: about 12 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=12)

DEAD_HOLDER = f"{socket.gethostname()}:999999999"


class Killed(BaseException):
    """Stands for the process being killed: nothing after it runs in that transaction."""


@pytest.fixture(scope="module")
def pristine(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite state database with the whole city ingested, never run."""
    folder = tmp_path_factory.mktemp("pristine")
    services = _services_at(folder / "state.sqlite", folder / "evidence")
    from liveness.migrate import upgrade

    upgrade(services.engine)
    for source in INGEST_ORDER:
        ingest_paths(services, source=source, paths=[city / source])
    services.engine.dispose()
    return folder


def _services_at(database: Path, evidence: Path) -> Services:
    return Services(
        Settings(
            database_url=f"sqlite:///{database}", evidence_dir=evidence, config_dir=REPO / "config"
        )
    )


def _copy(pristine: Path, target: Path) -> Services:
    shutil.copy(pristine / "state.sqlite", target / "state.sqlite")
    return _services_at(target / "state.sqlite", pristine / "evidence")


def _lists(services: Services) -> list[tuple[Any, ...]]:
    with session_scope(services.sessions) as session:
        return [
            tuple(row)
            for row in session.execute(
                select(
                    ListEntry.seq, Person.person_ref, ListEntry.action, ListEntry.reason,
                    ListEntry.effective_on, ListEntry.amount, ListEntry.status,
                )
                .join(Person, Person.id == ListEntry.person_id)
                .order_by(ListEntry.seq)
            )
        ]  # fmt: skip


@contextmanager
def _kill_at(services: Services, statement: int) -> Iterator[list[int]]:
    seen = [0]

    def count(*_: object) -> None:
        seen[0] += 1
        if seen[0] == statement:
            raise Killed(f"killed at statement {statement}")

    event.listen(services.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(services.engine, "before_cursor_execute", count)


def test_a_run_killed_at_any_point_and_rerun_publishes_what_an_uninterrupted_run_does(
    pristine: Path, tmp_path: Path
) -> None:
    reference = _copy(pristine, tmp_path)
    with _kill_at(reference, statement=10**9) as seen:
        execute_run(reference, as_of=AS_OF)
    expected = _lists(reference)
    total = seen[0]
    assert expected and total > 20
    reference.engine.dispose()

    points = sorted({1 + (total - 1) * k // 23 for k in range(24)})
    assert len(points) >= 20
    for point in points:
        folder = tmp_path / f"kill{point}"
        folder.mkdir()
        services = _copy(pristine, folder)
        with pytest.raises(Killed), _kill_at(services, point):
            execute_run(services, as_of=AS_OF)
        # The process is gone: whatever lock it held now names a dead process.
        with session_scope(services.sessions) as session:
            session.execute(update(RunLock).values(holder=DEAD_HOLDER))
            published = session.scalar(
                select(func.count()).select_from(Run).where(Run.status == RunStatus.PUBLISHED)
            )
        assert _lists(services) == ([] if not published else expected), point
        rerun = execute_run(services, as_of=AS_OF) if not published else None
        assert _lists(services) == expected, f"killed at statement {point} of {total}"
        if rerun is not None:
            assert rerun.status == RunStatus.PUBLISHED
        services.engine.dispose()


def test_runs_go_one_at_a_time(pristine: Path, tmp_path: Path) -> None:
    services = _copy(pristine, tmp_path)
    acquire_lock(services, holder="another-host:42")
    with pytest.raises(RunRefused, match="another-host:42"):
        execute_run(services, as_of=AS_OF)


def test_an_abandoned_lock_is_taken_over_and_its_run_marked_failed(
    pristine: Path, tmp_path: Path
) -> None:
    services = _copy(pristine, tmp_path)
    acquire_lock(services, holder=DEAD_HOLDER)
    with session_scope(services.sessions) as session:
        session.add(Run(as_of=AS_OF, status=RunStatus.RUNNING, policy_version="x"))
    run = execute_run(services, as_of=AS_OF)
    assert run.status == RunStatus.PUBLISHED
    with session_scope(services.sessions) as session:
        states = dict(session.execute(select(Run.id, Run.status)).all())
        assert session.get(RunLock, LOCK_NAME) is None
    assert sorted(states.values()) == [RunStatus.FAILED, RunStatus.PUBLISHED]


def test_a_failing_run_is_recorded_failed_and_publishes_nothing(
    pristine: Path, tmp_path: Path
) -> None:
    services = _copy(pristine, tmp_path)

    def explode(stage: str) -> None:
        if stage == "after guard":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        execute_run(services, as_of=AS_OF, checkpoint=explode)
    with session_scope(services.sessions) as session:
        (run,) = session.scalars(select(Run)).all()
        assert run.status == RunStatus.FAILED and "disk full" in (run.error or "")
        assert session.scalar(select(func.count()).select_from(Assessment)) == 0
        assert session.get(RunLock, LOCK_NAME) is None
    assert _lists(services) == []


def test_a_writer_during_a_run_is_told_to_retry_and_the_run_publishes(
    pristine: Path, tmp_path: Path
) -> None:
    # SQLite: a run begun deferred failed at its first write ("database is locked") once
    # another writer had committed after its first read. The run now holds the write lock
    # from its start; the other writer is refused at once and retries, as the API tells its
    # clients to (503 with Retry-After), and lands after the run.
    services = _copy(pristine, tmp_path)
    refusals: list[str] = []
    writer = threading.Thread(target=_move_someone, args=(services, refusals))

    def write_meanwhile(stage: str) -> None:
        if stage == "before evidence":
            writer.start()
            time.sleep(0.5)  # the writer tries while the run has read and not yet written

    run = execute_run(services, as_of=AS_OF, checkpoint=write_meanwhile)
    writer.join(timeout=60)
    assert not writer.is_alive()
    assert run.status == RunStatus.PUBLISHED
    assert refusals and all("locked" in refusal for refusal in refusals)
    with session_scope(services.sessions) as session:
        moved = select(func.count()).select_from(Person).where(Person.grid_code == "MOVED")
        assert session.scalar(moved) == 1


def _move_someone(services: Services, refusals: list[str]) -> None:
    """Commit a change of one person's grid, retrying while the database is busy."""
    for _ in range(300):
        try:
            with session_scope(services.sessions) as session:
                first = session.scalar(select(func.min(Person.id)))
                session.execute(update(Person).where(Person.id == first).values(grid_code="MOVED"))
            return
        except OperationalError as error:
            refusals.append(str(error.orig))
            time.sleep(0.2)
