"""State the API keeps: list acknowledgements, idempotency keys, verifier secrets, callbacks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class ListAck(Base):
    """The last list sequence a payment client says it has applied."""

    __tablename__ = "list_acks"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer)
    acked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A change made under an idempotency key: what was asked and what was answered."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("client", "key"),)


class ClientSecret(Base):
    """The key a client signs with: an HMAC secret (in clear, to verify) or an Ed25519 public key.

    `algorithm` is `hmac-sha256` (`secret` the shared secret) or `ed25519` (`secret` the raw
    32-byte public key, base64).
    """

    __tablename__ = "api_client_secrets"

    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    algorithm: Mapped[str] = mapped_column(
        String(16), default="hmac-sha256", server_default="hmac-sha256"
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FaceCallback(Base):
    """A verifier's signed result for a face verification request, received once."""

    __tablename__ = "face_callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("review_tasks.id"), unique=True)
    client: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16))
    # The signature of the accepted message: the same signed message again is a replay.
    signature: Mapped[str] = mapped_column(String(64), unique=True)
    record_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
