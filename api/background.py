"""Certification runs started from the API, each in a thread of its own."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.services import Services
from liveness.views.runs import running_run_id

logger = logging.getLogger("liveness.api")


class RunStarter:
    """Starts runs in background threads and keeps them, so that shutdown can wait for them."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.threads: list[threading.Thread] = []

    def start(
        self, *, as_of: dt.date, override_guard: bool, audit: Callable[[Session], None]
    ) -> int:
        """Start a run and return its id once it exists; a run refused at once raises here.

        `audit` writes the request's audit entry in a transaction committed before the run
        begins: on SQLite a commit by anyone else while the run's transaction is open would
        fail the run (its snapshot goes stale), so the request must not write during it.
        """
        with session_scope(self.services.sessions) as session:
            audit(session)
        started = threading.Event()
        run_ids: list[int] = []
        failure: list[BaseException] = []

        def checkpoint(_stage: str) -> None:
            # The first checkpoint comes after the run's row was committed, under the run
            # lock: the one running run is this one.
            if not run_ids:
                with session_scope(self.services.sessions) as session:
                    run_id = running_run_id(session)
                if run_id is not None:
                    run_ids.append(run_id)
                started.set()

        def work() -> None:
            try:
                execute_run(
                    self.services, as_of=as_of, override_guard=override_guard,
                    checkpoint=checkpoint,
                )  # fmt: skip
            except BaseException as error:  # execute_run records it on the run
                failure.append(error)
                logger.warning("run as of %s ended with %s: %s", as_of, type(error).__name__, error)
            finally:
                started.set()

        thread = threading.Thread(target=work, name=f"run-{as_of}", daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()
        started.wait()
        if not run_ids:
            if failure:
                raise failure[0]
            raise RuntimeError("the run ended without recording itself")
        return run_ids[0]

    def join(self, timeout: float | None = None) -> None:
        """Wait for the runs started here to finish."""
        for thread in self.threads:
            thread.join(timeout)
