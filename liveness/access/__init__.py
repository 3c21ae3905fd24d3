"""API clients, their access, and the audit log."""

from liveness.access.audit import ReadAudit, audit_page, record_audit
from liveness.access.policy import PERMISSIONS, authorize, authorize_grid, authorize_region
from liveness.access.service import (
    ClientInvalid,
    Forbidden,
    IssuedClient,
    Principal,
    Unauthenticated,
    authenticate,
    check_expiry,
    client_secret,
    create_client,
    hash_token,
    list_clients,
    principal_by_id,
    revoke_client,
    sign,
    verify_principal,
    verify_signature,
)

__all__ = [
    "PERMISSIONS",
    "ClientInvalid",
    "Forbidden",
    "IssuedClient",
    "Principal",
    "ReadAudit",
    "Unauthenticated",
    "audit_page",
    "authenticate",
    "authorize",
    "authorize_grid",
    "authorize_region",
    "check_expiry",
    "client_secret",
    "create_client",
    "hash_token",
    "list_clients",
    "principal_by_id",
    "record_audit",
    "revoke_client",
    "sign",
    "verify_principal",
    "verify_signature",
]
