"""Reading the TOML policy files of config/: one place for missing files and bad TOML."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveness.errors import ConfigurationError


@dataclass(frozen=True)
class PolicyFile:
    """A policy file's bytes (its version) and its parsed document."""

    path: Path
    raw: bytes
    document: dict[str, Any]

    @property
    def version(self) -> str:
        """Return the file's version: the first 12 hex characters of its SHA-256."""
        return hashlib.sha256(self.raw).hexdigest()[:12]


def read_policy_file(path: Path, *, what: str) -> PolicyFile:
    """Read and parse a TOML policy file, naming it in any error."""
    try:
        raw = path.read_bytes()
        document = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: {what} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{path}: not valid TOML: {error}") from None
    return PolicyFile(path=path, raw=raw, document=document)
