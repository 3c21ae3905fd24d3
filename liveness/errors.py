"""The engine's error hierarchy: one root, subclasses carry context.

Every error the engine reports derives from LivenessError; the CLI boundary exits with its
`exit_code`, the API answers its `http_status`. (exit code in brackets; each cause has its
own code, README.md "Exit codes" lists them all)

LivenessError [1]
├── ConfigurationError [10]     a config file or setting is wrong
│   └── PolicyError [10]        scoring.toml is wrong (also a ValueError)
├── DeliveryRefused [3]         a whole delivery was refused (decoding, columns, format)
├── RollMissing [4]             a step needs the benefit roll, and none is loaded
├── RunRefused [5]              a run cannot start (another run holds the lock, bad date)
├── SchemaOutdated [6]          the database is not migrated to this version's schema
├── EstimatorError [12]         the estimator cannot be trained or evaluated (estimator.dataset)
├── input refused [11]          OutcomeInvalid (review.outcomes), IntegrityInvalid
│                               (integrity.queries), ClientInvalid (access.service),
│                               PasswordInvalid (access.passwords)
├── state refused [8]           UndoRefused (review.outcomes), ClaimRefused (review.claims),
│                               ApprovalRefused (lists.service), AckRefused (views.lists),
│                               LeadRefused (integrity.service), IdempotencyConflict
│                               (access.idempotency), GatewayConflict (access.gateways)
├── Unauthenticated, Forbidden [9]  (access.service) a caller without a valid token, or
│                               acting outside its role, grids or regions
├── ViewInvalid [1]             a query a view cannot answer (views.queue)
├── CityTooSmall [1]            a simulated city too small for its anomalies (simulate)
└── NotFound [1]                a referenced object does not exist
    └── Hidden [1]              one outside the caller's scope, answered exactly as absent

Outside the root: connectors.ConnectorError (the connectors sit below the core and may not
import it; the CLI boundary maps it to exit 3, a refused delivery).

Not errors of the tree: 0 success; 2 a command line that does not parse or an option value
a command refuses (Click's usage error); 7 a run stopped by the mass-downgrade guard, nothing
published (a run's outcome, `liveness run` and `liveness scheduler`); 70 an unexpected
internal error (the boundary's one catch-all).
"""

from __future__ import annotations


class LivenessError(Exception):
    """Root of every error the engine reports to a user; the message is meant to be read."""

    exit_code: int = 1
    http_status: int = 400
    # A refusal of an attempted change that the boundary audits as refused (four eyes).
    audit_refusal: bool = False


class ConfigurationError(LivenessError):
    """A configuration file or setting is invalid."""

    exit_code = 10


class DeliveryRefused(LivenessError):
    """A delivery was refused whole; nothing of it was loaded."""

    exit_code = 3
    http_status = 422


class RollMissing(LivenessError):
    """A step needs the benefit roll, and none is loaded."""

    exit_code = 4
    http_status = 409


class RunRefused(LivenessError):
    """A certification run cannot start."""

    exit_code = 5
    http_status = 409


class SchemaOutdated(LivenessError):
    """The database has not been migrated to the schema this version needs."""

    exit_code = 6
    http_status = 503


class NotFound(LivenessError):
    """A referenced object does not exist."""

    http_status = 404


class Hidden(NotFound):
    """An object outside the caller's scope, answered exactly as an absent one.

    The message must be the one its absence gives, so that the caller cannot tell which.
    """
