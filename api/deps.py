"""Request dependencies: the session (the only place that commits), the caller, the audit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from liveness.access import Principal, authenticate, authorize, record_audit
from liveness.app import Services
from liveness.db import session_scope
from models import AuditEntry, utcnow

bearer = HTTPBearer(auto_error=False, description="An API client's token (liveness clients).")


def get_services(request: Request) -> Services:
    """Return the services the app was created with."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """Open the request's session: commit when the handler returns, roll back if it raised."""
    with session_scope(services.sessions) as session:
        yield session


# "function" scope: the commit happens before the response is sent, so a failed commit is
# answered as a failure, never as a success that did not stick.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Authenticate the bearer token in a short transaction of its own.

    Kept apart from the request's transaction so that a change's first statement is its
    first write: SQLite then queues writers instead of failing one on a stale snapshot.
    """
    token = None if credentials is None else credentials.credentials
    with session_scope(services.sessions) as session:
        return authenticate(session, token=token, now=utcnow())


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@dataclass
class Caller:
    """Who calls, from where, with the request's session: what every handler needs."""

    principal: Principal
    session: Session
    services: Services
    remote_addr: str | None

    @property
    def name(self) -> str:
        """Return the client's name, as the audit records it."""
        return self.principal.name

    def audit(
        self, action: str, target_type: str, target_ref: str | int | None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:  # fmt: skip
        """Write the audit entry of this request in its transaction (first, see get_principal)."""
        return record_audit(
            self.session, actor=self.principal.name, action=action, target_type=target_type,
            target_ref=None if target_ref is None else str(target_ref), detail=detail,
            remote_addr=self.remote_addr,
        )  # fmt: skip

    def today(self) -> dt.date:
        """Return today's date in the agency's time zone."""
        return dt.datetime.now(ZoneInfo(self.services.settings.timezone)).date()


def require(permission: str) -> Callable[..., Caller]:
    """Return a dependency admitting only callers whose role grants `permission`."""

    def dependency(
        request: Request, principal: PrincipalDep, session: SessionDep, services: ServicesDep
    ) -> Caller:
        authorize(principal, permission)
        return Caller(
            principal=principal, session=session, services=services,
            remote_addr=None if request.client is None else request.client.host,
        )  # fmt: skip

    return dependency
