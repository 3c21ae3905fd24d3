"""Signed death notices: the bytes a sender signs, its key (HMAC or Ed25519), the check.

What is signed is the canonical JSON of the envelope's `header` and `message` together:
`{"header": ..., "message": ...}` serialised with sorted keys, no insignificant whitespace
(separators `,` and `:`), non-ASCII characters as themselves, in UTF-8 (RFC 8785's form
for the texts, integers and booleans a notice holds). The signature is the hex
HMAC-SHA256 of those bytes under the sender's secret, or the base64 Ed25519 signature of
them under the sender's private key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from liveness.access.service import ClientInvalid, Unauthenticated
from models import ClientSecret

HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"


class SignatureRefused(Unauthenticated):
    """A notice whose signature, timestamp or message id is refused: audited as refused."""

    audit_refusal = True


@dataclass(frozen=True)
class SenderKey:
    """A sender's key: its algorithm and the secret (HMAC) or public key (Ed25519, base64)."""

    algorithm: str
    key: str


def sender_key(session: Session, *, client_id: int) -> SenderKey | None:
    """Return the key a client signs with, if it has one."""
    row = session.get(ClientSecret, client_id)
    return None if row is None else SenderKey(algorithm=row.algorithm, key=row.secret)


def signed_bytes(header: Any, message: Any) -> bytes:
    """Return the canonical bytes of an envelope's header and message: what a sender signs."""
    return json.dumps(
        {"header": header, "message": message}, sort_keys=True, separators=(",", ":"),
        ensure_ascii=False, allow_nan=False,
    ).encode("utf-8")  # fmt: skip


def hmac_signature(secret: str, payload: bytes) -> str:
    """Return the hex HMAC-SHA256 of `payload` under `secret`."""
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def public_key_text(text: str) -> str:
    """Return an Ed25519 public key (PEM, or the raw 32 bytes in base64) as base64 raw bytes."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ClientInvalid("public_key: not an Ed25519 public key")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            raw = base64.b64decode(text, validate=True)
            Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise ClientInvalid(
            "public_key: give an Ed25519 public key as PEM, or its 32 raw bytes in base64"
        ) from None
    return base64.b64encode(raw).decode()


def verify_notice_signature(key: SenderKey | None, *, payload: bytes, signature: str) -> None:
    """Refuse a payload whose signature does not verify under the sender's key."""
    if key is None:
        raise SignatureRefused("this client has no signing key; it cannot send notices")
    if not signature:
        raise SignatureRefused("signature: required")
    if key.algorithm == ED25519:
        try:
            public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key.key))
            public.verify(base64.b64decode(signature, validate=True), payload)
        except (InvalidSignature, ValueError, binascii.Error):
            raise SignatureRefused(
                "signature: does not verify (Ed25519, base64) over the canonical header and message"
            ) from None
        return
    if not hmac.compare_digest(hmac_signature(key.key, payload), signature.lower()):
        raise SignatureRefused(
            "signature: does not match (hex HMAC-SHA256 of the canonical header and message)"
        )
