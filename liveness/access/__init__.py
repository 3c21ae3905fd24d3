"""API clients, their access, and the audit log."""

from liveness.access.audit import audit_page, record_audit
from liveness.access.policy import PERMISSIONS, authorize, authorize_grid
from liveness.access.service import (
    ClientInvalid,
    Forbidden,
    IssuedClient,
    Principal,
    Unauthenticated,
    authenticate,
    client_secret,
    create_client,
    hash_token,
    list_clients,
    revoke_client,
    sign,
    verify_signature,
)

__all__ = [
    "PERMISSIONS",
    "ClientInvalid",
    "Forbidden",
    "IssuedClient",
    "Principal",
    "Unauthenticated",
    "audit_page",
    "authenticate",
    "authorize",
    "authorize_grid",
    "client_secret",
    "create_client",
    "hash_token",
    "list_clients",
    "record_audit",
    "revoke_client",
    "sign",
    "verify_signature",
]
