"""The engine's error hierarchy: one root, subclasses carry context.

LivenessError
├── ConfigurationError      a config file or setting is wrong
├── DeliveryRefused         a whole delivery was refused (decoding, columns, format)
├── RollMissing             a step needs the benefit roll, and none is loaded
├── RunRefused              a run cannot start (another run holds the lock, bad date)
└── NotFound                a referenced object does not exist
    └── Hidden              one outside the caller's scope, answered exactly as absent
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

    exit_code = 2


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
