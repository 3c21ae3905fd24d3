"""Connectors: read departments' deliveries, validate and normalise them; never decide."""

from connectors.base import Batch, Connector, get_connector
from connectors.config import (
    HttpSettings,
    SourceConfig,
    SqlSettings,
    ValidationRules,
    load_source_configs,
    make_transport,
    parse_source_configs,
    trace_specs,
)
from connectors.errors import (
    ConfigError,
    ConnectorError,
    FatalError,
    MissingColumns,
    RetriableError,
    TransportError,
    UndecodableFile,
    UnreadableFile,
)
from connectors.http import HttpTransport
from connectors.identity import id_check_character, normalise_id_numbers
from connectors.spec import SOURCES, Column, ColumnKind, LinkMode, SourceSpec, TraceSpec
from connectors.sql import SqlTransport
from connectors.transport import Pull

__all__ = [
    "SOURCES",
    "Batch",
    "Column",
    "ColumnKind",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "FatalError",
    "HttpSettings",
    "HttpTransport",
    "LinkMode",
    "MissingColumns",
    "Pull",
    "RetriableError",
    "SourceConfig",
    "SourceSpec",
    "SqlSettings",
    "SqlTransport",
    "TraceSpec",
    "TransportError",
    "UndecodableFile",
    "UnreadableFile",
    "ValidationRules",
    "get_connector",
    "id_check_character",
    "load_source_configs",
    "make_transport",
    "normalise_id_numbers",
    "parse_source_configs",
    "trace_specs",
]
