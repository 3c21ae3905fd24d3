"""Errors raised by connectors: a branch of the engine's one tree (`liveness.errors`).

Hierarchy (exit code in brackets)::

    LivenessError                 the root, from the dependency-free leaf liveness.errors
    └── ConnectorError [3]        a delivery refused whole
        ├── UndecodableFile       the file does not decode in its configured encoding
        ├── MissingColumns        a required column is absent
        ├── UnreadableFile        unknown format, corrupt container, empty file without header
        ├── ConfigError [10]      config/sources.toml is invalid (also a ConfigurationError)
        └── TransportError        a SQL or HTTP pull could not complete
            ├── RetriableError    transient (time-out, lost connection, 5xx): a later run may
            │                     succeed
            └── FatalError        permanent (4xx, missing table, malformed response): fix and
                                  rerun

Every error but ConfigError refuses a whole delivery; bad *rows* are never errors, they are
quarantined.
A pull that fails part-way has still handed over its earlier batches; the domain keeps the
watermark of what it committed, so rerunning resumes from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# The one module of the core the connectors may import: a leaf that imports nothing itself.
from liveness.errors import ConfigurationError, DeliveryRefused, LivenessError

__all__ = [
    "ConfigError",
    "ConnectorError",
    "FatalError",
    "MissingColumns",
    "RetriableError",
    "TransportError",
    "UndecodableFile",
    "UnreadableFile",
]


class ConnectorError(LivenessError):
    """Root of every error a connector raises; message is user-readable."""

    exit_code = DeliveryRefused.exit_code
    http_status = DeliveryRefused.http_status

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None


class UndecodableFile(ConnectorError):
    """Refuse a file that does not decode in its configured encoding."""

    def __init__(self, path: Path | str, *, encoding: str, offset: int, detail: str) -> None:
        super().__init__(
            f"{path}: does not decode as {encoding} at byte offset {offset} ({detail}); "
            "the whole file is refused, nothing of it was loaded",
            path=path,
        )
        self.encoding = encoding
        self.offset = offset


class MissingColumns(ConnectorError):
    """Refuse a file that lacks required columns."""

    def __init__(self, path: Path | str, *, source: str, columns: Sequence[str]) -> None:
        names = ", ".join(columns)
        super().__init__(
            f"{path}: required column(s) missing for source {source!r}: {names}; "
            "the whole file is refused (map a differently named column in config/sources.toml)",
            path=path,
        )
        self.source = source
        self.columns = tuple(columns)


class UnreadableFile(ConnectorError):
    """Refuse a file whose container cannot be read (format, corruption, no header)."""


class ConfigError(ConnectorError, ConfigurationError):
    """Reject an invalid source configuration, naming the source and key."""

    exit_code = ConfigurationError.exit_code
    http_status = ConfigurationError.http_status

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        source: str | None = None,
        key: str | None = None,
    ) -> None:
        where = ".".join(part for part in (source, key) if part)
        prefix = f"{path}: " if path is not None else ""
        super().__init__(f"{prefix}[{where}] {message}" if where else prefix + message, path=path)
        self.source = source
        self.key = key


class TransportError(ConnectorError):
    """Report a SQL or HTTP pull that could not complete; ``origin`` names where it read."""

    retriable: bool = False

    def __init__(self, message: str, *, origin: str) -> None:
        super().__init__(f"{origin}: {message}")
        self.origin = origin


class RetriableError(TransportError):
    """Report a transient failure (time-out, lost connection, 5xx); retrying later may work."""

    retriable = True


class FatalError(TransportError):
    """Report a permanent failure (4xx, missing table, malformed response); retrying will not."""
