"""The scoring policy: weights, windows and level rules read from ``config/scoring.toml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, create_model, field_validator

# The benefit types of the roll's contract; a level rule may be overridden per type.
from connectors.spec import BENEFIT_TYPES
from liveness.errors import ConfigurationError
from liveness.policy_files import PolicyModel, Texts, parse_policy_file, validate_policy

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


class PolicyError(ConfigurationError, ValueError):
    """A scoring policy file that cannot be used; the message names the offending key.

    A ValueError too, as it was before the error root: callers that catch that still do.
    """


Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveWeight = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Days = Annotated[int, Field(ge=1)]


class WindowsTable(PolicyModel):
    """The `[windows]` table: the recent and the long window, in days."""

    recent: Days
    long: Days


# One model per source: its kinds are exactly the contract's vocabulary, each with a weight.
WeightsTable = create_model(
    "WeightsTable",
    __base__=PolicyModel,
    **{
        source: (
            create_model(
                f"Weights_{source}",
                __base__=PolicyModel,
                **{kind: (Weight, ...) for kind in kinds},  # type: ignore[call-overload]
            ),
            ...,
        )
        for source, kinds in KIND_VOCABULARY.items()
    },
)


class RulesOverride(PolicyModel):
    """A benefit type's deviations from the default level rules."""

    recent: Days | None = None
    min_weight: PositiveWeight | None = None
    strong_sources: Days | None = None
    long_min_weight: PositiveWeight | None = None


class LevelsTable(PolicyModel):
    """The `[levels]` table: the default level rules, face settling and overrides."""

    min_weight: PositiveWeight
    strong_sources: Days
    long_min_weight: PositiveWeight
    face_settles: Texts
    overrides: dict[str, RulesOverride] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _benefit_types(cls, overrides: dict[str, RulesOverride]) -> dict[str, RulesOverride]:
        for benefit in overrides:
            if benefit not in BENEFIT_TYPES:
                raise ValueError(f"levels.overrides.{benefit}: unknown benefit type {benefit!r}")
        return overrides


class ScoringFile(PolicyModel):
    """The tables of config/scoring.toml."""

    windows: WindowsTable
    weights: WeightsTable  # type: ignore[valid-type]
    levels: LevelsTable


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


# Long by design: the policy file's sections read in order into one typed policy.
def parse_policy(data: bytes, *, origin: str = "<policy>") -> ScoringPolicy:
    """Parse and validate the bytes of a scoring policy file."""
    try:
        policy_file = parse_policy_file(data, origin=origin)
    except ConfigurationError as error:
        raise PolicyError(str(error)) from None
    doc = policy_file.document
    values = validate_policy(doc, ScoringFile, origin=origin, error=PolicyError)
    long = values.windows.long
    # Sources and kinds keep the file's order: their codes index the weight arrays.
    sources = tuple(doc["weights"])
    kinds = tuple((source, kind) for source in sources for kind in doc["weights"][source])
    weights = [float(getattr(getattr(values.weights, s), k)) for s, k in kinds]
    kind_index = {k: i for i, k in enumerate(kinds)}

    levels = values.levels
    default = LevelRules(
        recent=values.windows.recent,
        min_weight=levels.min_weight,
        strong_sources=levels.strong_sources,
        long_min_weight=levels.long_min_weight,
    )
    settles = np.zeros(len(kinds), dtype=np.bool_)
    for item in levels.face_settles:
        pair = tuple(item.split(".", 1))
        if len(pair) != 2 or pair not in kind_index:
            raise PolicyError(f"{origin}: levels.face_settles: unknown kind {item!r}")
        code = kind_index[(pair[0], pair[1])]
        if weights[code] <= 0:
            raise PolicyError(f"{origin}: levels.face_settles: {item!r} has weight 0")
        settles[code] = True

    overrides = {
        str(benefit): LevelRules(
            **{
                key: getattr(default, key) if getattr(table, key) is None else getattr(table, key)
                for key in _RULE_KEYS
            }
        )
        for benefit, table in levels.overrides.items()
    }

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
        version=policy_file.version,
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


def _key(name: str, key: str) -> str:
    return f"levels.{key}" if name == "levels" else f"levels.overrides.{name}.{key}"


def _recent_key(name: str) -> str:
    return "windows.recent" if name == "levels" else f"levels.overrides.{name}.recent"
