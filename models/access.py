"""Who may call the engine, and the record of what they did."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Role, enum_column, utcnow


class ApiClient(Base):
    """An API client: a role, its grids or regions, and the hash of its bearer token."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(enum_column(Role))
    grids: Mapped[list[Any]] = mapped_column(default=list)
    # Region codes or prefixes (3301 covers 330102) an inspector may see; empty for others.
    regions: Mapped[list[Any]] = mapped_column(default=list)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class WebSessionRecord(Base):
    """A signed-in web session, known to the server so that signing out ends it at once."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the random key the session cookie carries (the cookie is also signed).
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]


class ClientPassword(Base):
    """A person's way into the pages: an argon2 password hash, failures, lock, one-time code."""

    __tablename__ = "client_passwords"

    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), primary_key=True)
    # An argon2id hash in PHC form ($argon2id$v=19$...): never the password.
    password_hash: Mapped[str] = mapped_column(Text)
    set_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Failed attempts in a row since the last success or lock (counted here, not in a cookie).
    failures: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    # The TOTP shared secret (base32), needed in clear to check a code; None: no code asked.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # The time step of the last code accepted: a code is good once, never replayed.
    totp_last_step: Mapped[int | None]


class AuditEntry(Base):
    """Who read or changed what, when, and from where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_ref: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remote_addr: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_ref"),)
