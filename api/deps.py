"""Request dependencies: the session (the only place that commits), the caller, the audit."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, LiteralString, TypeVar
from zoneinfo import ZoneInfo

import anyio
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from liveness.access import (
    PERMISSIONS,
    Principal,
    ReadAudit,
    Unauthenticated,
    authenticate,
    authorize,
    check_expiry,
    hash_token,
    record_audit,
    verify_principal,
)
from liveness.access.idempotency import recall, remember
from liveness.db import end_session, session_scope
from liveness.services import Services
from models import AuditEntry, utcnow

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# How long a looked-up principal (name, role, grids) is reused by the queue and the feed.
# Revocation and expiry stay exact: they are checked on every request (require_cached).
PRINCIPAL_TTL_S = 5.0

bearer = HTTPBearer(auto_error=False, description="An API client's token (liveness clients).")


async def get_services(request: Request) -> Services:
    """Return the services the app was created with (async: no thread hop for a lookup)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


@dataclass(frozen=True)
class AuditIntent:
    """What a request is about to do, by whom: what the audit records if it is refused."""

    actor: str
    action: str
    target_type: str
    target_ref: str | None
    remote_addr: str | None
    via: str | None = None


def intend(
    request: Request, actor: str, action: str, target_type: str, target_ref: str | int | None,
    *, via: str | None = None,
) -> None:  # fmt: skip
    """Note what a request is about to do, so that a refusal is audited as refused (of what)."""
    request.state.audit_intent = AuditIntent(
        actor=actor, action=action, target_type=target_type,
        target_ref=None if target_ref is None else str(target_ref)[:64],
        remote_addr=None if request.client is None else request.client.host, via=via,
    )  # fmt: skip


def record_refusal(services: Services, intent: AuditIntent, *, status: int, reason: str) -> None:
    """Audit a refused attempt as refused, in a transaction of its own (the request's rolled back).

    The action is the one attempted with `.refused` appended: the log never shows a refused
    read or change as done.
    """
    detail: dict[str, Any] = {"refused": reason, "status": status}
    if intent.via is not None:
        detail["via"] = intent.via
    with session_scope(services.sessions) as session:
        record_audit(
            session, actor=intent.actor, action=f"{intent.action}.refused"[:64],
            target_type=intent.target_type, target_ref=intent.target_ref, detail=detail,
            remote_addr=intent.remote_addr,
        )  # fmt: skip


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    """Open the request's session: commit when the handler returns, roll back if it raised.

    Opening a session does no I/O (it begins on its first statement), so it happens on the
    event loop; only the commit (or rollback) goes to a worker thread: one hop, not two.
    """
    session = services.sessions()
    try:
        yield session
    except BaseException:
        await _end(session, failed=True)
        raise
    await _end(session, failed=False)


async def _end(session: Session, *, failed: bool) -> None:
    """End a request's session; only a transaction still open needs a worker thread."""
    if not failed and not session.in_transaction():
        session.close()  # committed by Caller.run already (or never began): no I/O left
        return
    with anyio.CancelScope(shield=True):  # a cancelled request still rolls back
        await run_in_threadpool(functools.partial(end_session, session, failed=failed))


# "function" scope: the commit happens before the response is sent, so a failed commit is
# answered as a failure, never as a success that did not stick.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class PrincipalCache:
    """Token hash -> principal, kept `ttl` seconds so that a request need not look it up.

    Only saves the lookup's own transaction: a cached principal is still verified (revoked,
    expired) by a primary-key read in the request's transaction, see `require_cached`.
    """

    def __init__(self, ttl: float = PRINCIPAL_TTL_S, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str) -> Principal | None:
        """Return a principal looked up less than `ttl` seconds ago, or None."""
        hit = self._entries.get(token_hash)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return None
        return hit[1]

    def put(self, token_hash: str, principal: Principal) -> None:
        """Remember a principal just looked up in the database."""
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()  # tokens are few; a full cache is refilled, not managed
        self._entries[token_hash] = (time.monotonic(), principal)


def _lookup(services: Services, token: str | None) -> Principal:
    """Authenticate a token in a short transaction of its own.

    Kept apart from the request's transaction so that a change's first statement is its
    first write: SQLite then queues writers instead of failing one on a stale snapshot.
    """
    with session_scope(services.sessions) as session:
        return authenticate(session, token=token, now=utcnow())


async def get_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Return the caller of a bearer token, looked up in the database (exact)."""
    token = None if credentials is None else credentials.credentials
    return await run_in_threadpool(_lookup, services, token)


async def _cached_principal(
    request: Request, services: Services, token: str | None
) -> tuple[Principal, bool]:
    """Return the caller of a bearer token and whether it still needs verifying.

    A token looked up a moment ago comes from the cache without I/O and is verified later,
    inside the handler's transaction (`Caller.run`): revocation stays exact.
    """
    cache: PrincipalCache | None = getattr(request.app.state, "principals", None)
    if not token or cache is None:
        return await run_in_threadpool(_lookup, services, token), False
    key = hash_token(token)
    principal = cache.get(key)
    if principal is not None:
        check_expiry(principal, now=utcnow())
        return principal, True
    principal = await run_in_threadpool(_lookup, services, token)
    cache.put(key, principal)
    return principal, False


PrincipalDep = Annotated[Principal, Depends(get_principal)]

# Connections per process for the one-statement reads (Caller.read_once). A statement holds
# its connection for one round trip (about a millisecond, most of it the commit's WAL flush),
# so a few serve the bench's 50 clients; more only add idle backends to PostgreSQL.
READ_CONNECTIONS = 8

# The caller's client, still neither revoked nor expired, read in the statement that serves
# the request: revocation is as exact as a lookup of its own, at no extra round trip.
CLIENT_CTE = (
    "client AS (SELECT id FROM api_clients WHERE id = %(client_id)s AND revoked_at IS NULL "
    "AND (expires_at IS NULL OR expires_at > %(now)s))"
)


# Set on every ReadPool connection. The hot statements are prepared (read_once) and their
# best plan does not depend on the parameters (index lookups by key, a page in index order),
# but under the default `auto` PostgreSQL planned the feed afresh on every call: a generic
# plan's estimate for `LIMIT $n` (a tenth of the rows) made it look dearer than a custom one,
# and planning was about a third of the feed's CPU (0.7-0.9 of 2.5 ms per page). For the same
# reason a generic plan's estimated cost can pass `jit_above_cost` on a large table, and JIT
# then compiles the statement on every call (400 ms measured, against 1.5 ms without): these
# short statements never gain from it.
READ_SESSION_SQL: tuple[LiteralString, ...] = (
    "SET plan_cache_mode = force_generic_plan",
    "SET jit = off",
)


class ReadPool:
    """Autocommit psycopg connections for the hot reads, used from the event loop.

    A read and its audit entry are one statement, hence one transaction, committed (and
    flushed: synchronous_commit as configured) when the statement returns. Awaiting it
    instead of handing it to a worker thread saves the thread hops and the GIL contention
    that made the tail. Statements are prepared on first use and planned once per
    connection (READ_SESSION_SQL). Connections belong to one event loop; a pool used from
    another (a test client's portal) drops them and starts afresh.
    """

    def __init__(self, database_url: str, size: int = READ_CONNECTIONS) -> None:
        self.conninfo = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        self.size = size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(size)
        self._idle: list[AsyncConnection[Any]] = []

    def _bind(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._drop()
            self._loop, self._slots = loop, asyncio.Semaphore(self.size)
        return self._slots

    def _drop(self) -> None:
        for connection in self._idle:
            connection.pgconn.finish()  # synchronous: its loop may be gone
        self._idle = []

    async def _connect(self) -> AsyncConnection[Any]:
        connection = await AsyncConnection.connect(self.conninfo, autocommit=True)
        for statement in READ_SESSION_SQL:
            await connection.execute(statement)
        return connection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """Lend an idle connection, opening one if none is idle (at most `size` in use)."""
        async with self._bind():
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                yield connection
            finally:
                # A statement cut short (a cancelled request) leaves the connection busy:
                # closed, not reused. Its statement committed whole or not at all.
                if connection.info.transaction_status == TransactionStatus.IDLE:
                    self._idle.append(connection)
                else:
                    connection.pgconn.finish()

    def close(self) -> None:
        """Close the idle connections (at shutdown)."""
        self._drop()


@dataclass
class Caller:
    """Who calls, from where, with the request's session: what every handler needs."""

    principal: Principal
    services: Services
    remote_addr: str | None
    # A principal from the cache: Caller.run verifies it first, in the request's transaction.
    unverified: bool = False
    # PostgreSQL: connections for the one-statement reads (read_once); None on SQLite.
    reads: ReadPool | None = None
    token: str | None = None
    # The request, whose state notes what it is about to do (see `intend`).
    request: Request | None = field(default=None, repr=False)
    # The request's session. `require` gives one (SessionDep ends it); a `require_cached`
    # caller has none until Caller.run opens one for its work and ends it there, so that the
    # one-statement reads (read_once) never build a session they do not use.
    _session: Session | None = field(default=None, repr=False)

    @property
    def session(self) -> Session:
        """Return the request's session (a `require_cached` caller's only inside `run`)."""
        if self._session is None:
            raise RuntimeError("a require_cached caller has a session only inside Caller.run")
        return self._session

    @property
    def name(self) -> str:
        """Return the client's name, as the audit records it."""
        return self.principal.name

    def audit(
        self, action: str, target_type: str, target_ref: str | int | None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:  # fmt: skip
        """Write the audit entry of this request in its transaction (first, see get_principal)."""
        self.intend(action, target_type, target_ref)
        return record_audit(
            self.session, actor=self.principal.name, action=action, target_type=target_type,
            target_ref=None if target_ref is None else str(target_ref), detail=detail,
            remote_addr=self.remote_addr,
        )  # fmt: skip

    def idempotent(
        self, entry: AuditEntry, *, key: str | None, digest: str, change: Callable[[], M]
    ) -> M | JSONResponse:
        """Make `change` once per idempotency key: a replay answers what the first call did.

        A key sent again with another body is refused (409, by `recall`); a replay is noted on
        the request's audit entry.
        """
        if key is not None:
            stored = recall(self.session, client=self.name, key=key, digest=digest)
            if stored is not None:
                entry.detail = {**entry.detail, "replayed_key": key}
                return JSONResponse(stored.response, status_code=stored.status_code)
        answer = change()
        if key is not None:
            remember(
                self.session, client=self.name, key=key, digest=digest, status_code=200,
                response=answer.model_dump(mode="json"),
            )  # fmt: skip
        return answer

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` and commit its transaction in one worker thread, for async handlers.

        The connection is then held only while a thread works with it, never while a
        request waits for a thread: a pool as large as the thread pool never runs dry.
        If `work` raises, nothing is committed. A caller without a session (require_cached)
        gets one for `work` alone, closed (rolled back if uncommitted) in the same thread
        even when the request is cancelled meanwhile; a given session is rolled back by the
        session dependency.
        """

        def work_and_commit() -> T:
            own = self._session is None
            if own:
                self._session = self.services.sessions()
            try:
                if self.unverified:
                    verify_principal(self.session, self.principal, now=utcnow())
                    self.unverified = False
                result = work()
                self.session.commit()
                return result
            finally:
                if own:
                    session, self._session = self.session, None
                    session.close()

        return await run_in_threadpool(work_and_commit)

    async def exact(self) -> None:
        """Replace a cached principal by a fresh lookup, so that a refusal is exact (401)."""
        if self.unverified:
            self.principal = await run_in_threadpool(_lookup, self.services, self.token)
            self.unverified = False

    async def read_once(
        self, sql: str, params: dict[str, Any], *, target_ref: str | None, now: dt.datetime
    ) -> tuple[Any, ...]:
        """Run a one-statement read with its audit (PostgreSQL); return its result row.

        `sql` takes the CTE `client` (CLIENT_CTE) and writes its audit with
        liveness.access.audit.read_audit_cte: the check that the client is neither revoked nor
        expired, the read and the audit entry are one statement, one round trip, one
        transaction. A refused client reads and writes nothing and gets 401 from an exact
        lookup.
        """
        assert self.reads is not None
        values = {
            **params, "client_id": self.principal.client_id, "now": now,
            "audit_actor": self.principal.name, "audit_ref": target_ref,
            "audit_addr": self.remote_addr,
        }  # fmt: skip
        async with self.reads.connection() as connection:
            # Prepared from the first call (not psycopg's default fifth): each connection runs
            # the same few statements thousands of times.
            cursor = await connection.execute(sql, values, prepare=True)
            row = await cursor.fetchone()
        if row is None or not row[0]:
            self.unverified = True
            await self.exact()  # raises the exact refusal (revoked, expired, unknown)
            raise Unauthenticated("the token is no longer valid")
        return tuple(row)

    def audit_read(self, action: str, target_type: str, target_ref: str | int | None) -> ReadAudit:
        """Return the audit entry of a read, to wrap around it (see ReadAudit)."""
        self.intend(action, target_type, target_ref)
        return ReadAudit(
            self.session, actor=self.principal.name, action=action, target_type=target_type,
            target_ref=None if target_ref is None else str(target_ref),
            remote_addr=self.remote_addr,
        )  # fmt: skip

    def intend(self, action: str, target_type: str, target_ref: str | int | None) -> None:
        """Note what this request is about to do (see `intend`)."""
        if self.request is not None:
            intend(self.request, self.principal.name, action, target_type, target_ref)

    def today(self) -> dt.date:
        """Return today's date in the agency's time zone."""
        return dt.datetime.now(ZoneInfo(self.services.settings.timezone)).date()


def require(permission: str) -> Callable[..., Awaitable[Caller]]:
    """Return a dependency admitting only callers whose role grants `permission`."""

    async def dependency(
        request: Request, principal: PrincipalDep, session: SessionDep, services: ServicesDep
    ) -> Caller:
        intend(request, principal.name, permission, "path", request.url.path)
        authorize(principal, permission)
        return Caller(
            principal=principal, _session=session, services=services,
            remote_addr=None if request.client is None else request.client.host,
            request=request,
        )  # fmt: skip

    return dependency


def require_cached(permission: str) -> Callable[..., Awaitable[Caller]]:
    """Like `require`, for async handlers doing all their work in `Caller.run` or read_once.

    One plain dependency (token, principal; no session, nothing to clean up), since
    resolving dependencies is a good part of a small request's cost: a generator dependency
    costs FastAPI an exit stack and a shielded context manager per request. The principal may
    come from the cache; Caller.run and read_once verify it (revoked, expired) in the
    request's transaction. A cached principal refused by its role is looked up again first,
    so that a revoked token is answered 401, never 403.
    """

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        services: Services = request.app.state.services
        token = None if credentials is None else credentials.credentials
        principal, unverified = await _cached_principal(request, services, token)
        if unverified and principal.role not in PERMISSIONS[permission]:
            principal, unverified = await run_in_threadpool(_lookup, services, token), False
        intend(request, principal.name, permission, "path", request.url.path)
        authorize(principal, permission)
        return Caller(
            principal=principal, services=services,
            remote_addr=None if request.client is None else request.client.host,
            unverified=unverified, reads=getattr(request.app.state, "reads", None),
            token=token, request=request,
        )  # fmt: skip

    return dependency
