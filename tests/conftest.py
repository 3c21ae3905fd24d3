"""Fixtures shared by the whole suite: a database per backend, per session.

Every database test runs on SQLite and on PostgreSQL. The PostgreSQL server is the one at
LIVENESS_TEST_POSTGRES_URL (default 127.0.0.1:5432, database `test`); each test session creates a
database of its own there and drops it afterwards. Off CI an unreachable server skips those
tests with a reason; on CI (CI set) it fails them, so they are never silently skipped there.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from liveness.db import make_engine
from liveness.migrate import upgrade


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, list the longest test files first, so that they are handed out first.

    xdist hands each worker one file at a time in the order collected here (the addopts turn
    off its own order, by number of tests): a long file handed out last runs alone at the end,
    and the suite waits for it. A file's length is the seconds its `slow` markers announce
    (`slow(seconds=N)`, about N seconds a test on a quiet 2-core machine), then, as xdist
    orders, its number of tests. In one process (`-n 0`) the order stays pytest's, which
    keeps each backend's session database for as many tests as it can.
    """
    if not hasattr(config, "workerinput"):
        return
    seconds: Counter[Path] = Counter()
    tests: Counter[Path] = Counter()
    for item in items:
        tests[item.path] += 1
        marker = item.get_closest_marker("slow")
        seconds[item.path] += float(marker.kwargs.get("seconds", 0)) if marker else 0.0
    # Stable: each file's tests keep their order (and stay together).
    items.sort(key=lambda item: (-seconds[item.path], -tests[item.path]))


POSTGRES_ADMIN_URL = os.environ.get(
    "LIVENESS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


class _PostgresDatabases:
    """Creates throw-away databases on the test server and drops them at the end."""

    def __init__(self) -> None:
        self.admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = f"liveness_test_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(False)

    def drop_all(self) -> None:
        with self.admin.connect() as connection:
            for name in self.created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def _postgres() -> Iterator[_PostgresDatabases | None]:
    databases = _PostgresDatabases()
    try:
        with databases.admin.connect():
            pass
    except OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable on CI: {error}")
        databases.admin.dispose()
        yield None
        return
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def database_url_factory(
    _postgres: _PostgresDatabases | None, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], str]:
    """Return a function that creates a new empty database on a backend and gives its URL."""

    def create(backend: str) -> str:
        if backend == "sqlite":
            folder: Path = tmp_path_factory.mktemp("db")
            return f"sqlite:///{folder / 'liveness.sqlite'}"
        if _postgres is None:
            pytest.skip(f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable")
        return _postgres.create()

    return create


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name each database backend the suite runs on."""
    return str(request.param)


@pytest.fixture(scope="session")
def engine(backend: str, database_url_factory: Callable[[str], str]) -> Iterator[Engine]:
    """Return an engine on a migrated database of this session, one per backend."""
    db_engine = make_engine(database_url_factory(backend))
    upgrade(db_engine)
    yield db_engine
    db_engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """Give a session inside an outer transaction that is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    db_session = Session(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield db_session
    finally:
        db_session.close()
        outer.rollback()
        connection.close()
