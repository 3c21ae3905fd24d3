"""Reading the TOML policy files of config/: one reader, typed models, one-line errors.

Each policy file has a pydantic model (a `PolicyModel`: frozen, unknown keys refused, no
silent coercion of `true` into 1 or of "5" into 5). `load_policy(path, Model)` reads the file,
validates it and returns the model with the file's version; any error is one
`ConfigurationError` line naming the file, the key path and what was expected.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from liveness.errors import ConfigurationError

__all__ = [
    "LoadedPolicy",
    "PolicyFile",
    "PolicyModel",
    "Texts",
    "load_policy",
    "read_policy_file",
    "validate_policy",
]


@dataclass(frozen=True)
class PolicyFile:
    """A policy file's bytes (its version) and its parsed document."""

    path: Path
    raw: bytes
    document: dict[str, Any]

    @property
    def version(self) -> str:
        """Return the file's version: the first 12 hex characters of its SHA-256."""
        return file_version(self.raw)


def file_version(raw: bytes) -> str:
    """Return the version of a policy file's bytes: the first 12 hex characters of SHA-256."""
    return hashlib.sha256(raw).hexdigest()[:12]


def read_policy_file(path: Path, *, what: str) -> PolicyFile:
    """Read and parse a TOML policy file, naming it in any error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: {what} not found") from None
    return parse_policy_file(raw, origin=path)


def parse_policy_file(raw: bytes, *, origin: Path | str) -> PolicyFile:
    """Parse the bytes of a TOML policy file, naming `origin` in any error."""
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{origin}: not valid TOML: {error}") from None
    return PolicyFile(path=Path(origin), raw=raw, document=document)


def _as_tuple(value: object) -> object:
    # TOML arrays arrive as lists; the models hold tuples so that they stay immutable.
    return tuple(value) if isinstance(value, list) else value


# A TOML array of strings, held as a tuple.
Texts = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]


class PolicyModel(BaseModel):
    """Base of every policy file's model: frozen, unknown keys refused, types strict."""

    # strict: TOML has real types, so `recent = true` or `min_persons = "2"` are mistakes to
    # name, not values to coerce (a strict float still takes an integer such as `weight = 1`).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


M = TypeVar("M", bound=PolicyModel)


@dataclass(frozen=True)
class LoadedPolicy(Generic[M]):
    """A validated policy file: its model, its version and where it was read."""

    model: M
    version: str
    path: Path


def _key_path(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location)


# Error kinds whose message states a bound or a choice: the offending value is worth showing.
_NAMES_A_BOUND = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "literal_error"}
)


def _explain(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (not a setting)"
    if kind == "missing":
        return "missing (required)"
    message = str(error["msg"])
    for prefix in ("Input should be ", "Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = ("should be " if prefix == "Input should be " else "") + message.removeprefix(
                prefix
            )
    if kind.endswith("_type") or kind in _NAMES_A_BOUND:
        message += f", got {error['input']!r}"
    return message


# Errors named in the one line of a refused file; the rest are counted.
_SHOWN = 3


def _describe(error: Any) -> str:
    where = _key_path(error["loc"])
    return f"{where}: {_explain(error)}" if where else _explain(error)


def validate_policy(
    document: dict[str, Any],
    model: type[M],
    *,
    origin: Path | str,
    error: type[ConfigurationError] = ConfigurationError,
) -> M:
    """Validate a parsed policy document against its model; errors name file and key."""
    try:
        return model.model_validate(document)
    except ValidationError as failure:
        # A misspelt key is both unknown and missing: naming the unknown one first shows the typo.
        found = sorted(
            failure.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden"
        )
        shown = "; ".join(_describe(item) for item in found[:_SHOWN])
        tail = f" (and {len(found) - _SHOWN} more)" if len(found) > _SHOWN else ""
        raise error(f"{origin}: {shown}{tail}") from None


def load_policy(
    path: Path,
    model: type[M],
    *,
    what: str = "policy file",
    error: type[ConfigurationError] = ConfigurationError,
) -> LoadedPolicy[M]:
    """Read, parse and validate one policy file; return its model and version."""
    policy_file = read_policy_file(path, what=what)
    validated = validate_policy(policy_file.document, model, origin=path, error=error)
    return LoadedPolicy(model=validated, version=policy_file.version, path=path)
