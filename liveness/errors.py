"""The engine's error hierarchy: one root, subclasses carry context.

Every error the engine reports derives from LivenessError; the CLI boundary exits with its
`exit_code`, the API answers its `http_status`. Exit code in brackets: each cause that reaches
the command line has its own (README.md "Exit codes" lists every code;
tests/liveness/test_errors.py holds both to this tree).

This module is a leaf that imports nothing: the connectors, below the core, import it for the
root (the one import of the core tests/test_layers.py allows them).

LivenessError [1]               the root; its code only for an error that declares none
├── ConfigurationError [10]     a config file or setting is wrong
│   ├── PolicyError [10]        a policy file is wrong (scoring.policy; also a ValueError)
│   ├── MessagesInvalid [10]    the pages' messages.toml lacks a language (api.web.i18n)
│   └── ConfigError [10]        config/sources.toml is wrong (connectors.errors; also a
│                               ConnectorError)
├── ConnectorError [3]          a connector refused a delivery whole (connectors.errors, its
│   │                           tree there): UndecodableFile, MissingColumns, UnreadableFile
│   └── TransportError [3]      a SQL or HTTP pull could not complete: RetriableError,
│                               FatalError
├── DeliveryRefused [3]         a whole delivery was refused (decoding, columns, format)
├── RollMissing [4]             a step needs the benefit roll, and none is loaded
├── RunRefused [5]              a run cannot start (another run holds the lock, bad date):
│                               RunDateRefused (certification.runner; the date, which
│                               waiting does not mend: the scheduler does not retry it)
├── SchemaOutdated [6]          the database is not migrated to this version's schema
├── StateRefused [8]            a change the object's state refuses: UndoRefused
│                               (review.outcomes), ClaimRefused (review.claims),
│                               ApprovalRefused (lists.service), LeadRefused
│                               (integrity.service), IdempotencyConflict (access.idempotency),
│                               GatewayConflict (access.gateways), AckRefused (views.lists)
├── Unauthenticated [9]         (access.service) a caller without a valid token:
│                               SignatureRefused (access.signatures; a death notice's
│                               signature, sender or timestamp), NoticeReplayed
│                               (ingest.notices; a message id again with other content)
├── Forbidden [9]               (access.service) a caller acting outside its role, grids or
│                               regions
├── InputInvalid [11]           an input the engine refuses: OutcomeInvalid (review.outcomes),
│                               IntegrityInvalid (integrity.queries), ClientInvalid
│                               (access.service), PasswordInvalid (access.passwords),
│                               ViewInvalid (views.queue; only the API asks a view: 422),
│                               WhatIfInvalid (whatif.history), AmountInvalid
│                               (integrity.service), NoticeDayInvalid (access.gateways),
│                               NoticeInvalid (ingest.notices; a pushed death notice, refused
│                               whole and audited), LeadsDateInvalid (integrity.service),
│                               AuditMonthInvalid (lists.audit)
├── EstimatorError [12]         the estimator cannot be trained or evaluated (estimator.dataset)
├── NotFound [13]               a referenced object does not exist
│   └── Hidden [13]             one outside the caller's scope, answered exactly as absent
└── CityTooSmall [15]           (simulate.integrity) a simulated city too small for its
                                anomalies (the demo catches it and goes on without them)

Outside the root: api.web.pages.SignInRequired (not an error: it sends the browser to the
sign-in page).

Not errors of the tree: 0 success; 2 a command line that does not parse or an option value
a command refuses (Click's usage error); 7 a run stopped by the mass-downgrade guard, nothing
published (a run's outcome, `liveness run` and `liveness scheduler`); 14 a night
`liveness scheduler` ran and that failed (after its retries); 70 an unexpected internal error
(the boundary's one catch-all); 74 a file or folder the operating system refused (OSError),
or an address `liveness serve` cannot listen on;
75 a database that could not do the work (SQLAlchemy's OperationalError).
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


class StateRefused(LivenessError):
    """A change that the state of its object refuses; the message says why."""

    exit_code = 8
    http_status = 409


class InputInvalid(LivenessError):
    """An input the engine refuses; the message names the field or value."""

    exit_code = 11
    http_status = 422


class NotFound(LivenessError):
    """A referenced object does not exist."""

    exit_code = 13
    http_status = 404


class Hidden(NotFound):
    """An object outside the caller's scope, answered exactly as an absent one.

    The message must be the one its absence gives, so that the caller cannot tell which.
    """
