"""Database engine and the transaction boundary.

Only a boundary (a CLI command, a job, a request, a test) opens `session_scope`; services
receive the session, flush when they need ids, and never commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# Execution option of a session's connection: its transaction writes after reading, so on
# SQLite it begins holding the write lock (other writers wait for it, it never fails for them).
WRITES_AHEAD = "liveness_writes_ahead"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for `url`; SQLite gets real transactions, foreign keys and a folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over
    # so that a run publishes atomically and tests can roll back an outer transaction.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A transaction that will write whatever it reads (a run) takes the write lock at
        # once: begun deferred, its first write would fail if another writer had committed
        # since its first read (SQLite cannot move a reader's snapshot forward).
        immediate = connection.get_execution_options().get(WRITES_AHEAD, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to `engine`."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open a session for one unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def query_frame(session: Session, statement: Executable, columns: list[str]) -> pd.DataFrame:
    """Run a select and return its rows as a DataFrame, built column by column (fast)."""
    rows = session.execute(statement).all()
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    return pd.DataFrame(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)))
