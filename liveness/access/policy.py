"""Which roles may do what: the access matrix the API enforces, in one place."""

from __future__ import annotations

from liveness.access.service import Forbidden, Principal
from liveness.errors import Hidden
from models import Role

ADMIN, OPERATOR, GRID, PAYMENT, VERIFIER, NOTIFIER, AUDITOR, INSPECTOR, REGISTRAR = (
    Role.ADMIN, Role.OPERATOR, Role.GRID_WORKER, Role.PAYMENT, Role.VERIFIER, Role.NOTIFIER,
    Role.AUDITOR, Role.INSPECTOR, Role.REGISTRAR,
)  # fmt: skip

# Grid workers are further scoped to their grids, inspectors to their regions, by the
# operation itself.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "runs.create": frozenset({ADMIN, OPERATOR}),
    "runs.read": frozenset({ADMIN, OPERATOR, AUDITOR}),
    "persons.read": frozenset({ADMIN, OPERATOR, GRID, AUDITOR}),
    "tasks.read": frozenset({ADMIN, OPERATOR, GRID, AUDITOR}),
    "tasks.claim": frozenset({ADMIN, OPERATOR, GRID}),
    "tasks.outcome": frozenset({ADMIN, OPERATOR, GRID}),
    # Release another's claim, undo another's outcome: a supervisor's word, not a colleague's.
    "tasks.supervise": frozenset({ADMIN, OPERATOR}),
    # Supervisors escalate the agency's own delays; a grid worker sees their grids' own.
    "reviews.overdue": frozenset({ADMIN, OPERATOR, GRID, AUDITOR}),
    "face.requests": frozenset({ADMIN, VERIFIER}),
    # Only a verifier holds a signing secret: the callback is theirs alone.
    "face.callback": frozenset({VERIFIER}),
    # Only a registrar holds a sender's key: death notices are theirs alone.
    "deaths.notify": frozenset({REGISTRAR}),
    "notices.read": frozenset({ADMIN, NOTIFIER}),
    "notices.sent": frozenset({ADMIN, NOTIFIER}),
    "lists.read": frozenset({ADMIN, OPERATOR, PAYMENT, AUDITOR}),
    "lists.ack": frozenset({ADMIN, PAYMENT}),
    "lists.approve": frozenset({ADMIN, OPERATOR}),
    "indicators.read": frozenset({ADMIN, OPERATOR, AUDITOR}),
    "audit.read": frozenset({ADMIN, AUDITOR}),
    "leads.read": frozenset({ADMIN, OPERATOR, AUDITOR, INSPECTOR}),
    "orders.create": frozenset({ADMIN, OPERATOR}),
    "orders.read": frozenset({ADMIN, OPERATOR, AUDITOR, INSPECTOR}),
    # The region's inspectors answer; the issuing level (operators) reviews the answers.
    "leads.answer": frozenset({ADMIN, INSPECTOR}),
    "leads.review": frozenset({ADMIN, OPERATOR}),
    "integrity.precision": frozenset({ADMIN, OPERATOR, AUDITOR}),
}


def authorize(principal: Principal, permission: str) -> None:
    """Refuse a caller whose role does not grant `permission`."""
    if principal.role not in PERMISSIONS[permission]:
        raise Forbidden(f"a {principal.role} client may not {permission.replace('.', ' ')}")


def authorize_grid(principal: Principal, grid: str) -> None:
    """Refuse a grid worker acting outside their grids."""
    if not principal.may_see_grid(grid):
        raise Forbidden(f"grid {grid} is not one of this client's grids")


def hide_outside_grids(principal: Principal, grid: str, *, absent: str) -> None:
    """Answer a grid worker asking outside their grids exactly as if nothing were there.

    `absent` is the message the object's absence gives: the worker cannot tell whether a
    person or task of another grid exists. The refusal is still audited as refused.
    """
    if not principal.may_see_grid(grid):
        raise Hidden(absent)


def authorize_region(principal: Principal, region: str) -> None:
    """Refuse an inspector acting outside their regions."""
    if not principal.may_see_region(region):
        raise Forbidden(f"region {region} is not one of this client's regions")
