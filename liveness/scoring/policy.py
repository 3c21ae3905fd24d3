"""The scoring policy: weights, windows and level rules read from ``config/scoring.toml``."""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# The benefit types of the roll's contract; a level rule may be overridden per type.
from connectors.spec import BENEFIT_TYPES

__all__ = [
    "BENEFIT_TYPES",
    "KIND_VOCABULARY",
    "LevelRules",
    "PolicyError",
    "ScoringPolicy",
    "benefit_rule_codes",
    "load_policy",
    "parse_policy",
]

# The contract's vocabulary (docs/SOURCES.md), as the run maps raw rows to kinds.
# It lives here rather than in the TOML because it is not policy: a new kind needs code too.
KIND_VOCABULARY: Mapping[str, tuple[str, ...]] = {
    "transit": ("tap_face", "tap", "tap_face_failed"),
    "card_txn": ("pos_pin", "pos_tap", "counter", "atm", "online", "auto_debit"),
    "medical": (
        "outpatient",
        "emergency",
        "inpatient_admission",
        "inpatient_discharge",
        "pharmacy",
        "home_care",
    ),
    "face": (
        "pass_app",
        "pass_kiosk",
        "pass_assisted",
        "pass_proxy",
        "fail",
        "no_liveness",
        "no_face",
    ),
}


_RULE_KEYS = ("recent", "min_weight", "strong_sources", "long_min_weight")


class PolicyError(ValueError):
    """A scoring policy file that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class LevelRules:
    """Hold the level thresholds that apply to one group of persons."""

    recent: int
    min_weight: float
    strong_sources: int
    long_min_weight: float


@dataclass(frozen=True, eq=False)
class ScoringPolicy:
    """Hold a parsed, validated scoring policy and its version."""

    version: str
    sources: tuple[str, ...]
    kinds: tuple[tuple[str, str], ...]
    weight_of_kind: npt.NDArray[np.float32]
    source_of_kind: npt.NDArray[np.int8]
    settles_of_kind: npt.NDArray[np.bool_]
    long: int
    default: LevelRules
    overrides: Mapping[str, LevelRules] = field(default_factory=dict)

    @property
    def recent(self) -> int:
        """Return the default recent window in days."""
        return self.default.recent

    @property
    def rules(self) -> tuple[LevelRules, ...]:
        """Return the rule sets: code 0 is the default, then the overrides in file order."""
        return (self.default, *self.overrides.values())

    @property
    def recent_windows(self) -> tuple[int, ...]:
        """Return the distinct recent windows of all rule sets, default first."""
        return tuple(dict.fromkeys(r.recent for r in self.rules))

    @property
    def kind_index(self) -> dict[tuple[str, str], int]:
        """Return the code of each (source, kind) pair."""
        return {k: i for i, k in enumerate(self.kinds)}


def load_policy(path: Path) -> ScoringPolicy:
    """Read and validate a scoring policy file."""
    data = path.read_bytes()
    return parse_policy(data, origin=str(path))


def parse_policy(data: bytes, *, origin: str = "<policy>") -> ScoringPolicy:
    """Parse and validate the bytes of a scoring policy file."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{origin}: not valid UTF-8 TOML: {exc}") from exc
    version = hashlib.sha256(data).hexdigest()[:12]
    _only_keys(doc, "", {"windows", "weights", "levels"}, origin)

    windows = _table(doc, "windows", origin)
    _only_keys(windows, "windows", {"recent", "long"}, origin)
    recent = _pos_int(windows, "recent", "windows", origin)
    long = _pos_int(windows, "long", "windows", origin)

    sources, kinds, weights = _parse_weights(_table(doc, "weights", origin), origin)
    kind_index = {k: i for i, k in enumerate(kinds)}

    levels = _table(doc, "levels", origin)
    _only_keys(
        levels,
        "levels",
        {"min_weight", "strong_sources", "long_min_weight", "face_settles", "overrides"},
        origin,
    )
    default = LevelRules(
        recent=recent,
        min_weight=_pos_float(levels, "min_weight", "levels", origin),
        strong_sources=_pos_int(levels, "strong_sources", "levels", origin),
        long_min_weight=_pos_float(levels, "long_min_weight", "levels", origin),
    )
    settles = np.zeros(len(kinds), dtype=np.bool_)
    raw_settles = _required(levels, "face_settles", "levels", origin)
    if not isinstance(raw_settles, list):
        raise PolicyError(f"{origin}: levels.face_settles must be a list of 'source.kind'")
    for item in raw_settles:
        pair = tuple(str(item).split(".", 1))
        if len(pair) != 2 or pair not in kind_index:
            raise PolicyError(f"{origin}: levels.face_settles: unknown kind {item!r}")
        code = kind_index[(pair[0], pair[1])]
        if weights[code] <= 0:
            raise PolicyError(f"{origin}: levels.face_settles: {item!r} has weight 0")
        settles[code] = True

    overrides: dict[str, LevelRules] = {}
    raw_overrides = levels.get("overrides", {})
    if not isinstance(raw_overrides, dict):
        raise PolicyError(f"{origin}: levels.overrides must be a table")
    for benefit, table in raw_overrides.items():
        where = f"levels.overrides.{benefit}"
        if benefit not in BENEFIT_TYPES:
            raise PolicyError(f"{origin}: {where}: unknown benefit type {benefit!r}")
        if not isinstance(table, dict):
            raise PolicyError(f"{origin}: {where} must be a table")
        _only_keys(table, where, set(_RULE_KEYS), origin)
        values: dict[str, Any] = {}
        for key in _RULE_KEYS:
            if key not in table:
                values[key] = getattr(default, key)
            elif key in ("recent", "strong_sources"):
                values[key] = _pos_int(table, key, where, origin)
            else:
                values[key] = _pos_float(table, key, where, origin)
        overrides[benefit] = LevelRules(**values)

    for name, rules in (("levels", default), *overrides.items()):
        if rules.recent > long:
            raise PolicyError(
                f"{origin}: {_recent_key(name)} ({rules.recent}) exceeds windows.long ({long})"
            )
        if rules.strong_sources > len(sources):
            raise PolicyError(
                f"{origin}: {_key(name, 'strong_sources')} "
                f"({rules.strong_sources}) exceeds the {len(sources)} sources"
            )

    return ScoringPolicy(
        version=version,
        sources=sources,
        kinds=kinds,
        weight_of_kind=np.asarray(weights, dtype=np.float32),
        source_of_kind=np.asarray([sources.index(s) for s, _ in kinds], dtype=np.int8),
        settles_of_kind=settles,
        long=long,
        default=default,
        overrides=overrides,
    )


def benefit_rule_codes(
    *, benefit_type: npt.NDArray[Any], policy: ScoringPolicy
) -> npt.NDArray[np.int8]:
    """Map benefit types to codes into ``policy.rules`` (0, the default, for any other type)."""
    names = list(policy.overrides)
    values = np.asarray(benefit_type)
    if not names:
        return np.zeros(values.shape, dtype=np.int8)
    if values.dtype.kind in "iu":
        # Integer input is codes into BENEFIT_TYPES, which saves the run a string round trip.
        lookup = np.zeros(len(BENEFIT_TYPES) + 1, dtype=np.int8)
        for code, name in enumerate(names, start=1):
            lookup[BENEFIT_TYPES.index(name)] = code
        return lookup[np.where((values >= 0) & (values < len(BENEFIT_TYPES)), values, -1)]
    codes = np.zeros(values.shape, dtype=np.int8)
    for code, name in enumerate(names, start=1):
        codes[values == name] = code
    return codes


def _parse_weights(
    weights: dict[str, Any], origin: str
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], list[float]]:
    for source in weights:
        if source not in KIND_VOCABULARY:
            raise PolicyError(f"{origin}: weights.{source}: unknown source")
    sources: list[str] = []
    kinds: list[tuple[str, str]] = []
    values: list[float] = []
    for source in KIND_VOCABULARY:
        if source not in weights:
            raise PolicyError(f"{origin}: weights.{source}: missing source table")
    for source, table in weights.items():
        if not isinstance(table, dict):
            raise PolicyError(f"{origin}: weights.{source} must be a table")
        vocabulary = KIND_VOCABULARY[source]
        for kind in table:
            if kind not in vocabulary:
                raise PolicyError(f"{origin}: weights.{source}.{kind}: unknown kind")
        for kind in vocabulary:
            if kind not in table:
                raise PolicyError(f"{origin}: weights.{source}.{kind}: missing weight")
        sources.append(source)
        for kind in table:
            kinds.append((source, kind))
            values.append(_weight(table, kind, f"weights.{source}", origin))
    return tuple(sources), tuple(kinds), values


def _key(name: str, key: str) -> str:
    return f"levels.{key}" if name == "levels" else f"levels.overrides.{name}.{key}"


def _recent_key(name: str) -> str:
    return "windows.recent" if name == "levels" else f"levels.overrides.{name}.recent"


def _table(doc: dict[str, Any], key: str, origin: str) -> dict[str, Any]:
    value = _required(doc, key, "", origin)
    if not isinstance(value, dict):
        raise PolicyError(f"{origin}: {key} must be a table")
    return value


def _required(table: dict[str, Any], key: str, where: str, origin: str) -> Any:
    if key not in table:
        raise PolicyError(f"{origin}: {_join(where, key)}: missing")
    return table[key]


def _only_keys(table: dict[str, Any], where: str, allowed: set[str], origin: str) -> None:
    for key in table:
        if key not in allowed:
            raise PolicyError(f"{origin}: {_join(where, key)}: unknown key")


def _pos_int(table: dict[str, Any], key: str, where: str, origin: str) -> int:
    value = _required(table, key, where, origin)
    # bool is an int subclass: `recent = true` must not become a 1-day window.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(
            f"{origin}: {_join(where, key)}: must be a positive integer, got {value!r}"
        )
    return value


def _pos_float(table: dict[str, Any], key: str, where: str, origin: str) -> float:
    value = _weight(table, key, where, origin)
    if value <= 0:
        raise PolicyError(f"{origin}: {_join(where, key)}: must be positive, got {value!r}")
    return value


def _weight(table: dict[str, Any], key: str, where: str, origin: str) -> float:
    value = _required(table, key, where, origin)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise PolicyError(
            f"{origin}: {_join(where, key)}: must be a finite number >= 0, got {value!r}"
        )
    return float(value)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
