"""People's sign-in: passwords an administrator sets, lock-out, and optional one-time codes.

Machines keep their API tokens (liveness.access.service); a person signs in to the pages with
their client's name and a password, hashed with argon2id, then with a one-time code (TOTP,
RFC 6238) if the administrator gave them one. Failed attempts are counted per account in the
database; after `max_failures` in a row the account locks for `lock_minutes` (config/access.toml).

A locked account is refused without its password being checked, with the same answer as a
wrong password or an unknown name: whoever is guessing learns nothing, not even that the
account exists or that a guess was right. The answer states the lock-out rule, so a person who
is locked out knows to wait or to ask the administrator (`liveness clients unlock`).
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.access.audit import record_audit
from liveness.access.service import Principal, Unauthenticated, principal_by_id
from liveness.errors import InputInvalid, NotFound
from liveness.policy_files import PolicyModel, load_policy
from models import ApiClient, ClientPassword, Role

__all__ = [
    "Attempt",
    "PasswordInvalid",
    "SignInCheck",
    "SignInPolicy",
    "check_code",
    "check_password",
    "code_uri",
    "disable_code",
    "enable_code",
    "load_sign_in_policy",
    "set_password",
    "sign_in_states",
    "unlock",
]

ISSUER = "liveness"
CODE_DIGITS = 6
# argon2-cffi's defaults are RFC 9106's second recommendation (argon2id, 64 MiB, 3 passes):
# the library keeps them current, and check_needs_rehash upgrades old hashes at sign-in.
_HASHER = PasswordHasher()


class PasswordInvalid(InputInvalid):
    """A password or one-time code setting that cannot be made as asked."""


@dataclass(frozen=True)
class SignInPolicy:
    """The numbers of config/access.toml: lock-out, code window, password lengths."""

    version: str
    max_failures: int
    lock_minutes: int
    code_minutes: int
    code_drift_steps: int
    min_password_length: int
    max_password_length: int


class SignInFile(PolicyModel):
    """The keys of config/access.toml, as the file holds them."""

    max_failures: int = Field(ge=1)
    lock_minutes: int = Field(ge=1)
    code_minutes: int = Field(ge=1)
    code_drift_steps: int = Field(ge=0)
    min_password_length: int = Field(ge=1)
    max_password_length: int = Field(ge=1)

    @model_validator(mode="after")
    def _lengths_in_order(self) -> SignInFile:
        if self.min_password_length > self.max_password_length:
            raise ValueError("min_password_length exceeds max_password_length")
        return self


def load_sign_in_policy(path: Path) -> SignInPolicy:
    """Read and validate config/access.toml."""
    loaded = load_policy(path, SignInFile, what="sign-in policy")
    return SignInPolicy(version=loaded.version, **loaded.model.model_dump())


class Attempt(StrEnum):
    """How a sign-in step ended."""

    SIGNED_IN = "signed_in"
    CODE_REQUIRED = "code_required"
    REFUSED = "refused"


@dataclass(frozen=True)
class SignInCheck:
    """The end of a sign-in step: who (if anyone), and why not (for the audit, not the page)."""

    attempt: Attempt
    client_id: int | None = None
    principal: Principal | None = None
    reason: str | None = None
    locked_until: dt.datetime | None = None


def _client_named(session: Session, name: str) -> ApiClient:
    """Return the client of a name, or refuse it as not found."""
    client = session.scalars(select(ApiClient).where(ApiClient.name == name)).first()
    if client is None:
        raise NotFound(f"no API client named {name!r}")
    return client


def set_password(
    session: Session, *, name: str, password: str, policy: SignInPolicy, now: dt.datetime
) -> ApiClient:
    """Set (or replace) a client's password, stored as an argon2id hash; it also unlocks."""
    client = _client_named(session, name)
    if len(password) < policy.min_password_length:
        raise PasswordInvalid(f"password: at least {policy.min_password_length} characters")
    if len(password) > policy.max_password_length:
        raise PasswordInvalid(f"password: at most {policy.max_password_length} characters")
    if password.strip() != password:
        raise PasswordInvalid("password: no spaces at its start or end (they are easily lost)")
    if password.casefold() == name.casefold():
        raise PasswordInvalid("password: must not be the client's name")
    row = session.get(ClientPassword, client.id)
    if row is None:
        row = ClientPassword(client_id=client.id, password_hash="", failures=0)
        session.add(row)
    row.password_hash = _HASHER.hash(password)
    row.set_at = now
    row.failures = 0
    row.locked_until = None
    session.flush()
    return client


def enable_code(session: Session, *, name: str) -> tuple[ApiClient, str]:
    """Give a client a new one-time code secret (replacing any); return it, in base32."""
    client = _client_named(session, name)
    row = session.get(ClientPassword, client.id)
    if row is None:
        raise PasswordInvalid(
            f"code: {name!r} has no password yet; set one first (liveness clients password)"
        )
    secret = pyotp.random_base32()
    row.totp_secret = secret
    row.totp_last_step = None
    session.flush()
    return client, secret


def disable_code(session: Session, *, name: str) -> ApiClient:
    """Stop asking a client for a one-time code."""
    client = _client_named(session, name)
    row = session.get(ClientPassword, client.id)
    if row is not None:
        row.totp_secret = None
        row.totp_last_step = None
        session.flush()
    return client


def unlock(session: Session, *, name: str) -> ApiClient:
    """Lift a client's lock-out and forget its failed attempts."""
    client = _client_named(session, name)
    row = session.get(ClientPassword, client.id)
    if row is not None:
        row.failures = 0
        row.locked_until = None
        session.flush()
    return client


def sign_in_states(session: Session, *, now: dt.datetime) -> dict[int, str]:
    """Return how each client with a password signs in, by client id, and any lock."""
    states = {}
    for row in session.scalars(select(ClientPassword)):
        state = "password" if row.totp_secret is None else "password+code"
        if _is_locked(row, now) and row.locked_until is not None:
            state += f", locked until {row.locked_until:%Y-%m-%d %H:%M} UTC"
        states[row.client_id] = state
    return states


def code_uri(*, name: str, secret: str) -> str:
    """Return the otpauth:// URI an authenticator app reads (as a QR code or typed)."""
    return pyotp.TOTP(secret, digits=CODE_DIGITS).provisioning_uri(name=name, issuer_name=ISSUER)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Return a hash to verify against when there is none: refusals take the same time."""
    return _HASHER.hash("no password is set for this name")


def _verify(password_hash: str, password: str) -> bool:
    """Return whether a password matches an argon2 hash."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _refuse(
    session: Session, *, client: ApiClient | None, typed_name: str, via: str, reason: str,
    remote_addr: str | None, locked_until: dt.datetime | None = None,
) -> SignInCheck:  # fmt: skip
    """Audit a refused attempt as refused and return the refusal."""
    detail: dict[str, object] = {"via": via, "reason": reason}
    if client is None:
        detail["name"] = typed_name[:64]
    if locked_until is not None:
        detail["locked_until"] = locked_until.isoformat()
    record_audit(
        session, actor="anonymous" if client is None else client.name,
        action="web.sign_in.refused", target_type="client",
        target_ref=None if client is None else str(client.id), detail=detail,
        remote_addr=remote_addr,
    )  # fmt: skip
    return SignInCheck(
        attempt=Attempt.REFUSED, client_id=None if client is None else client.id,
        reason=reason, locked_until=locked_until,
    )  # fmt: skip


def _fail(row: ClientPassword, *, policy: SignInPolicy, now: dt.datetime) -> dt.datetime | None:
    """Count a failed attempt; lock the account (and restart the count) at the limit."""
    row.failures += 1
    if row.failures < policy.max_failures:
        return None
    row.failures = 0
    row.locked_until = now + dt.timedelta(minutes=policy.lock_minutes)
    return row.locked_until


def _is_locked(row: ClientPassword, now: dt.datetime) -> bool:
    """Return whether an account is locked at `now`."""
    return row.locked_until is not None and row.locked_until > now


def _signed_in(
    session: Session, *, client: ApiClient, row: ClientPassword, via: str, now: dt.datetime,
    remote_addr: str | None,
) -> SignInCheck:  # fmt: skip
    """Reset the failures, audit the sign-in and return the principal."""
    row.failures = 0
    row.locked_until = None
    principal = principal_by_id(session, client_id=client.id, now=now)
    record_audit(
        session, actor=client.name, action="web.sign_in", target_type="client",
        target_ref=str(client.id), detail={"via": via}, remote_addr=remote_addr,
    )  # fmt: skip
    return SignInCheck(attempt=Attempt.SIGNED_IN, client_id=client.id, principal=principal)


def check_password(
    session: Session, *, name: str, password: str, policy: SignInPolicy, now: dt.datetime,
    roles: Collection[Role], remote_addr: str | None = None,
) -> SignInCheck:  # fmt: skip
    """Check a name and password: signed in, a code still required, or refused (and audited).

    Only clients of `roles` (those with pages) may sign in. The boundary commits whatever the
    result: the count of failures and the refusal's audit entry must be kept precisely when
    the attempt fails.
    """
    client = session.scalars(select(ApiClient).where(ApiClient.name == name[:64])).first()
    row = None
    if client is not None:
        # Locked for the update: two guesses at once must both be counted.
        row = session.scalars(
            select(ClientPassword).where(ClientPassword.client_id == client.id).with_for_update()
        ).first()

    def refuse(reason: str, locked_until: dt.datetime | None = None) -> SignInCheck:
        return _refuse(
            session, client=client, typed_name=name, via="password", reason=reason,
            remote_addr=remote_addr, locked_until=locked_until,
        )  # fmt: skip

    if len(password) > policy.max_password_length:
        return refuse("too_long")
    if client is None or row is None:
        _verify(_dummy_hash(), password)
        return refuse("unknown_name" if client is None else "no_password")
    if _is_locked(row, now):
        _verify(_dummy_hash(), password)
        return refuse("locked", row.locked_until)
    if not _verify(row.password_hash, password):
        return refuse("wrong_password", _fail(row, policy=policy, now=now))
    try:
        principal_by_id(session, client_id=client.id, now=now)
    except Unauthenticated:
        return refuse("revoked_or_expired")
    if client.role not in roles:
        return refuse("no_pages")
    if _HASHER.check_needs_rehash(row.password_hash):
        row.password_hash = _HASHER.hash(password)
    if row.totp_secret is not None:
        session.flush()
        return SignInCheck(attempt=Attempt.CODE_REQUIRED, client_id=client.id)
    return _signed_in(
        session, client=client, row=row, via="password", now=now, remote_addr=remote_addr
    )


def check_code(
    session: Session, *, client_id: int, code: str, policy: SignInPolicy, now: dt.datetime,
    roles: Collection[Role], remote_addr: str | None = None,
) -> SignInCheck:  # fmt: skip
    """Check the one-time code of a client whose password was just accepted.

    A code is good within `code_drift_steps` steps of now, and once: a step at or before the
    last one accepted is refused, so a code seen over a shoulder cannot be replayed.
    """
    client = session.get(ApiClient, client_id)
    row = session.scalars(
        select(ClientPassword).where(ClientPassword.client_id == client_id).with_for_update()
    ).first()
    if client is None or row is None or row.totp_secret is None:
        return _refuse(
            session, client=client, typed_name="", via="code", reason="no_code",
            remote_addr=remote_addr,
        )  # fmt: skip
    if _is_locked(row, now):
        return _refuse(
            session, client=client, typed_name="", via="code", reason="locked",
            remote_addr=remote_addr, locked_until=row.locked_until,
        )  # fmt: skip
    step = _matching_step(row.totp_secret, code, policy=policy, now=now)
    if step is None or (row.totp_last_step is not None and step <= row.totp_last_step):
        return _refuse(
            session, client=client, typed_name="", via="code",
            reason="wrong_code" if step is None else "code_reused", remote_addr=remote_addr,
            locked_until=_fail(row, policy=policy, now=now),
        )  # fmt: skip
    row.totp_last_step = step
    try:
        principal_by_id(session, client_id=client.id, now=now)
    except Unauthenticated:  # revoked or expired between the password and the code
        return _refuse(
            session, client=client, typed_name="", via="code", reason="revoked_or_expired",
            remote_addr=remote_addr,
        )  # fmt: skip
    if client.role not in roles:
        return _refuse(
            session, client=client, typed_name="", via="code", reason="no_pages",
            remote_addr=remote_addr,
        )  # fmt: skip
    return _signed_in(
        session, client=client, row=row, via="password+code", now=now, remote_addr=remote_addr
    )


def _matching_step(secret: str, code: str, *, policy: SignInPolicy, now: dt.datetime) -> int | None:
    """Return the time step whose code `code` is (spaces ignored), or None."""
    typed = "".join(code.split())
    if len(typed) != CODE_DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=CODE_DIGITS)
    current = totp.timecode(now)
    for step in range(current - policy.code_drift_steps, current + policy.code_drift_steps + 1):
        if hmac.compare_digest(totp.generate_otp(step), typed):
            return step
    return None
