"""Connectors: read departments' deliveries, validate and normalise them; never decide."""

from connectors.base import Batch, Connector, get_connector
from connectors.config import SourceConfig, load_source_configs, parse_source_configs
from connectors.errors import (
    ConfigError,
    ConnectorError,
    MissingColumns,
    UndecodableFile,
    UnreadableFile,
)
from connectors.identity import id_check_character, normalise_id_numbers
from connectors.spec import SOURCES, Column, ColumnKind, SourceSpec

__all__ = [
    "SOURCES",
    "Batch",
    "Column",
    "ColumnKind",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "MissingColumns",
    "SourceConfig",
    "SourceSpec",
    "UndecodableFile",
    "UnreadableFile",
    "get_connector",
    "id_check_character",
    "load_source_configs",
    "normalise_id_numbers",
    "parse_source_configs",
]
