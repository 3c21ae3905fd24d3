"""API clients: bearer tokens stored as SHA-256 hashes, roles, grid scopes, expiry, revocation."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from liveness.errors import InputInvalid, LivenessError, NotFound
from models import ApiClient, ClientSecret, Person, Role, utcnow

TOKEN_PREFIX = "lv_"
# A county's 6-digit code, or the 2-digit province or 4-digit city prefix covering its counties.
REGION_PATTERN = re.compile(r"\d{2}|\d{4}|\d{6}")
# The roll's grid_code column holds at most this many characters (models.Person).
GRID_CODE_MAX = 32


class Unauthenticated(LivenessError):
    """A request without a valid token: missing, unknown, expired or revoked."""

    exit_code = 9
    http_status = 401


class Forbidden(LivenessError):
    """A caller acting outside its role, its grids or its regions."""

    exit_code = 9
    http_status = 403


class ClientInvalid(InputInvalid):
    """A client that cannot be created as asked."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the client's name, role, grids and regions (empty: not scoped)."""

    client_id: int
    name: str
    role: Role
    grids: tuple[str, ...]
    expires_at: dt.datetime | None = None
    regions: tuple[str, ...] = ()

    def may_see_grid(self, grid: str) -> bool:
        """Return whether this caller may act on `grid` (only grid workers are scoped)."""
        return self.role != Role.GRID_WORKER or grid in self.grids

    def region_scope(self) -> tuple[str, ...] | None:
        """Return the region codes or prefixes this caller is scoped to, None if not scoped."""
        return self.regions if self.role == Role.INSPECTOR else None

    def may_see_region(self, region: str) -> bool:
        """Return whether this caller may act on `region` (only inspectors are scoped)."""
        scope = self.region_scope()
        return scope is None or any(region.startswith(prefix) for prefix in scope)


@dataclass(frozen=True)
class IssuedClient:
    """A client just created, with its token (and secret) in clear: shown once, never stored."""

    name: str
    role: Role
    token: str
    secret: str | None
    expires_at: dt.datetime | None


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def grids_nobody_is_in(session: Session, grids: Sequence[str]) -> list[str]:
    """Return those of `grids` that no person on the roll is in (a typo, or a grid to come)."""
    known = set(session.scalars(select(Person.grid_code).where(Person.grid_code.in_(grids))))
    return [grid for grid in grids if grid not in known]


def create_client(
    session: Session,
    *,
    name: str,
    role: Role | str,
    grids: Sequence[str] = (),
    regions: Sequence[str] = (),
    expires_days: int | None = None,
    with_secret: bool = False,
    public_key: str | None = None,
) -> IssuedClient:
    """Create an API client; verifiers always get a signing secret, others on request.

    A registrar signs its death notices with an HMAC secret issued here, or with the Ed25519
    key whose `public_key` (PEM, or base64 raw bytes) is given instead.
    """
    try:
        chosen = Role(role)
    except ValueError:
        raise ClientInvalid(
            f"role: {role!r} is not a role; expected one of {', '.join(Role)}"
        ) from None
    if not name or len(name) > 64:
        raise ClientInvalid("name: 1 to 64 characters")
    if chosen == Role.GRID_WORKER and not grids:
        raise ClientInvalid("grid: a grid worker needs at least one --grid")
    if chosen != Role.GRID_WORKER and grids:
        raise ClientInvalid(f"grid: only grid workers are scoped to grids, not {chosen}")
    for grid in grids:
        # Matched exactly against the roll's grid codes: a padded or empty one matches nobody,
        # and the worker would see an empty queue without knowing why.
        if not grid or grid != grid.strip() or len(grid) > GRID_CODE_MAX or not grid.isprintable():
            raise ClientInvalid(
                f"grid: {grid!r} is not a grid code; give it as the roll spells it (1 to "
                f"{GRID_CODE_MAX} printable characters, no spaces around it)"
            )
    if chosen == Role.INSPECTOR and not regions:
        raise ClientInvalid(
            "region: an inspector needs at least one --region (330102, or a prefix like 3301)"
        )
    if chosen != Role.INSPECTOR and regions:
        raise ClientInvalid(f"region: only inspectors are scoped to regions, not {chosen}")
    for region in regions:
        if not REGION_PATTERN.fullmatch(region):
            raise ClientInvalid(
                f"region: {region!r} is not a region; give a 6-digit code (330102) or a"
                " 2- or 4-digit prefix (33, 3301)"
            )
    if expires_days is not None and expires_days < 1:
        raise ClientInvalid("expires_days: at least one day")
    if public_key is not None and chosen != Role.REGISTRAR:
        raise ClientInvalid(f"public_key: only registrars sign with a public key, not {chosen}")
    if public_key is not None and with_secret:
        raise ClientInvalid("public_key: a registrar signs with a public key or a secret, not both")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = None if expires_days is None else utcnow() + dt.timedelta(days=expires_days)
    client = ApiClient(
        name=name, role=chosen, grids=sorted(set(grids)), regions=sorted(set(regions)),
        token_hash=hash_token(token), expires_at=expires_at,
    )  # fmt: skip
    session.add(client)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ClientInvalid(f"name: a client named {name!r} exists already") from None
    secret = None
    if public_key is not None:
        from liveness.access.signatures import ED25519, public_key_text

        session.add(ClientSecret(client_id=client.id, secret=public_key_text(public_key),
                                 algorithm=ED25519))  # fmt: skip
        session.flush()
    elif with_secret or chosen in (Role.VERIFIER, Role.REGISTRAR):
        secret = secrets.token_hex(32)
        session.add(ClientSecret(client_id=client.id, secret=secret))
        session.flush()
    return IssuedClient(name=name, role=chosen, token=token, secret=secret, expires_at=expires_at)


def list_clients(session: Session) -> list[ApiClient]:
    """Return every client, by name."""
    return list(session.scalars(select(ApiClient).order_by(ApiClient.name)))


def revoke_client(session: Session, *, name: str) -> ApiClient:
    """Revoke a client's token now; revoking twice keeps the first time."""
    client = session.scalars(select(ApiClient).where(ApiClient.name == name)).first()
    if client is None:
        raise NotFound(f"no API client named {name!r}")
    if client.revoked_at is None:
        client.revoked_at = utcnow()
        session.flush()
    return client


def authenticate(session: Session, *, token: str | None, now: dt.datetime) -> Principal:
    """Return the caller a bearer token belongs to, or refuse it."""
    if not token:
        raise Unauthenticated("a bearer token is required (Authorization: Bearer ...)")
    client = session.scalars(
        select(ApiClient).where(ApiClient.token_hash == hash_token(token))
    ).first()
    return _principal_of(client, now=now)


def principal_by_id(session: Session, *, client_id: int, now: dt.datetime) -> Principal:
    """Return the caller a client id belongs to (a web session names one), or refuse it."""
    return _principal_of(session.get(ApiClient, client_id), now=now)


def _principal_of(client: ApiClient | None, *, now: dt.datetime) -> Principal:
    """Return a client as a principal, refusing one unknown, revoked or expired."""
    if client is None:
        raise Unauthenticated("the token is not known")
    if client.revoked_at is not None:
        raise Unauthenticated("the token was revoked")
    principal = Principal(
        client_id=client.id, name=client.name, role=Role(client.role),
        grids=tuple(str(g) for g in client.grids), expires_at=client.expires_at,
        regions=tuple(str(r) for r in client.regions or ()),
    )  # fmt: skip
    check_expiry(principal, now=now)
    return principal


def verify_principal(session: Session, principal: Principal, *, now: dt.datetime) -> None:
    """Refuse a (cached) principal whose client was since revoked, expired or removed.

    One primary-key read in the caller's transaction: exact, and cheap next to a lookup.
    """
    row = session.execute(
        select(ApiClient.revoked_at, ApiClient.expires_at).where(
            ApiClient.id == principal.client_id
        )
    ).first()
    if row is None:
        raise Unauthenticated("the token is not known")
    if row.revoked_at is not None:
        raise Unauthenticated("the token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated("the token has expired")


def check_expiry(principal: Principal, *, now: dt.datetime) -> None:
    """Refuse a principal whose token has expired (also when it comes from a cache)."""
    if principal.expires_at is not None and principal.expires_at <= now:
        raise Unauthenticated("the token has expired")


def client_secret(session: Session, *, client_id: int) -> str | None:
    """Return a client's HMAC signing secret, if it has one."""
    row = session.get(ClientSecret, client_id)
    return None if row is None or row.algorithm != "hmac-sha256" else row.secret


def sign(secret: str, *, timestamp: str, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret`."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | None, *, timestamp: str | None, signature: str | None, body: bytes,
    now: dt.datetime, window_s: int,
) -> None:  # fmt: skip
    """Refuse a callback whose signature is wrong or whose timestamp is outside the window."""
    if secret is None:
        raise Unauthenticated("this client has no signing secret")
    if not timestamp or not signature:
        raise Unauthenticated("X-Timestamp and X-Signature are required")
    try:
        sent = int(timestamp)
    except ValueError:
        raise Unauthenticated("X-Timestamp: seconds since 1970-01-01 UTC") from None
    if abs(now.timestamp() - sent) > window_s:
        raise Unauthenticated(
            f"X-Timestamp: outside the replay window of {window_s} s; sign with the current time"
        )
    expected = sign(secret, timestamp=timestamp, body=body)
    if not hmac.compare_digest(expected, signature.lower()):
        raise Unauthenticated("X-Signature: does not match the body and timestamp")
