"""The scoring policy: weights, windows and level rules read from ``config/scoring.toml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, create_model, field_validator

from connectors import TraceSpec

# The benefit types of the roll's contract; a level rule may be overridden per type.
from connectors.spec import BENEFIT_TYPES
from liveness.errors import ConfigurationError
from liveness.policy_files import PolicyModel, Texts, parse_policy_file, validate_policy
from liveness.sources import BUILTIN_TRACES, group_codes, traces_beside

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

# The built-in sources' vocabulary (docs/SOURCES.md), as the run maps raw rows to kinds; a
# declared source's kinds are those its declaration in sources.toml maps rows to.
KIND_VOCABULARY: Mapping[str, tuple[str, ...]] = {
    name: spec.kinds for name, spec in BUILTIN_TRACES.items()
}


_RULE_KEYS = ("recent", "min_weight", "strong_sources", "long_min_weight", "institution")


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


@lru_cache(maxsize=16)
def _weights_table(vocabulary: tuple[tuple[str, tuple[str, ...]], ...]) -> type[PolicyModel]:
    """Return the model of `[weights]`: per source, exactly its kinds, each with a weight."""
    fields: dict[str, Any] = {
        source: (
            create_model(
                f"Weights_{source}",
                __base__=PolicyModel,
                **{kind: (Weight, ...) for kind in kinds},  # type: ignore[call-overload]
            ),
            ...,
        )
        for source, kinds in vocabulary
    }
    return create_model("WeightsTable", __base__=PolicyModel, **fields)


class RulesOverride(PolicyModel):
    """A benefit type's deviations from the default level rules."""

    recent: Days | None = None
    min_weight: PositiveWeight | None = None
    strong_sources: Days | None = None
    long_min_weight: PositiveWeight | None = None
    institution: dict[str, PositiveWeight] | None = None


class LevelsTable(PolicyModel):
    """The `[levels]` table: the default level rules, face settling and overrides."""

    min_weight: PositiveWeight
    strong_sources: Days
    long_min_weight: PositiveWeight
    face_settles: Texts
    institution: dict[str, PositiveWeight] = Field(default_factory=dict)
    overrides: dict[str, RulesOverride] = Field(default_factory=dict)

    @field_validator("overrides")
    @classmethod
    def _benefit_types(cls, overrides: dict[str, RulesOverride]) -> dict[str, RulesOverride]:
        for benefit in overrides:
            if benefit not in BENEFIT_TYPES:
                raise ValueError(f"levels.overrides.{benefit}: unknown benefit type {benefit!r}")
        return overrides


@lru_cache(maxsize=16)
def _scoring_file(vocabulary: tuple[tuple[str, tuple[str, ...]], ...]) -> type[PolicyModel]:
    """Return the model of config/scoring.toml for the trace sources of `vocabulary`."""
    return create_model(
        "ScoringFile",
        __base__=PolicyModel,
        windows=(WindowsTable, ...),
        weights=(_weights_table(vocabulary), ...),
        levels=(LevelsTable, ...),
    )


@dataclass(frozen=True)
class LevelRules:
    """Hold the level thresholds that apply to one group of persons.

    ``institution`` maps an institution's care-record source to the weight in the recent
    window at which its records alone make a person strong (empty: no such rule).
    """

    recent: int
    min_weight: float
    strong_sources: int
    long_min_weight: float
    institution: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ScoringPolicy:
    """Hold a parsed, validated scoring policy and its version."""

    version: str
    sources: tuple[str, ...]
    kinds: tuple[tuple[str, str], ...]
    # The independence group of each source, as an index into `groups`: sources of one group
    # record the same acts and agree as one (by default each source is a group of its own).
    group_of_source: npt.NDArray[np.int8]
    groups: tuple[str, ...]
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
    def group_members(self) -> dict[str, list[str]]:
        """Return the sources of each independence group, in source order."""
        members: dict[str, list[str]] = {group: [] for group in self.groups}
        for source, code in zip(self.sources, self.group_of_source.tolist(), strict=True):
            members[self.groups[code]].append(source)
        return members

    @property
    def kind_index(self) -> dict[tuple[str, str], int]:
        """Return the code of each (source, kind) pair."""
        return {k: i for i, k in enumerate(self.kinds)}

    def kind_codes(self, source: str) -> dict[str, int]:
        """Return the code of each of `source`'s kinds (what a window read maps kinds to)."""
        return {kind: code for code, (src, kind) in enumerate(self.kinds) if src == source}


def load_policy(path: Path, *, traces: Mapping[str, TraceSpec] | None = None) -> ScoringPolicy:
    """Read and validate a scoring policy file for the trace sources `traces`.

    By default, those of the sources.toml beside the file (else the shipped ones).
    """
    data = path.read_bytes()
    return parse_policy(
        data, origin=str(path), traces=traces_beside(path) if traces is None else traces
    )


# Long by design: the policy file's sections read in order into one typed policy.
def parse_policy(
    data: bytes, *, origin: str = "<policy>", traces: Mapping[str, TraceSpec] | None = None
) -> ScoringPolicy:
    """Parse and validate the bytes of a scoring policy file.

    Its `[weights]` name every trace source of `traces` (by default: the shipped ones) with
    exactly the kinds each produces.
    """
    if traces is None:
        traces = traces_beside(None)
    try:
        policy_file = parse_policy_file(data, origin=origin)
    except ConfigurationError as error:
        raise PolicyError(str(error)) from None
    doc = policy_file.document
    vocabulary = tuple((name, tuple(spec.kinds)) for name, spec in traces.items())
    values: Any = validate_policy(doc, _scoring_file(vocabulary), origin=origin, error=PolicyError)
    long = values.windows.long
    # Sources and kinds keep the file's order: their codes index the weight arrays.
    sources = tuple(doc["weights"])
    kinds = tuple((source, kind) for source in sources for kind in doc["weights"][source])
    weights = [float(getattr(getattr(values.weights, s), k)) for s, k in kinds]
    kind_index = {k: i for i, k in enumerate(kinds)}
    groups, group_of_source = group_codes(sources, traces)

    levels = values.levels
    default = LevelRules(
        recent=values.windows.recent,
        min_weight=levels.min_weight,
        strong_sources=levels.strong_sources,
        long_min_weight=levels.long_min_weight,
        institution=dict(levels.institution),
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
        if rules.strong_sources > len(groups):
            raise PolicyError(
                f"{origin}: {_key(name, 'strong_sources')} ({rules.strong_sources}) exceeds "
                f"the {len(groups)} independent sources (groups of sources.toml)"
            )
        for source in rules.institution:
            if source not in sources:
                raise PolicyError(
                    f"{origin}: {_key(name, 'institution')}.{source}: unknown trace source "
                    f"{source!r} (not in [weights])"
                )

    return ScoringPolicy(
        version=policy_file.version,
        sources=sources,
        kinds=kinds,
        group_of_source=np.asarray(group_of_source, dtype=np.int8),
        groups=groups,
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


def benefit_type_codes(benefit_type: Any) -> npt.NDArray[np.int32]:
    """Return each benefit type's index in ``BENEFIT_TYPES`` (-1 for any other).

    Looked up in Arrow: a roll's Arrow-backed column (or any array of strings) never becomes a
    million Python strings, which cost the run a quarter of a second to make and compare.
    ``benefit_rule_codes`` takes these codes as it takes the names.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    # A pandas Series hands over its own array: Arrow-backed, it is passed without a copy.
    values = pa.array(getattr(benefit_type, "array", benefit_type))
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        # Categories, or nothing but nulls (an empty roll): looked up as text.
        values = values.cast(pa.string())
    found = pc.index_in(values, value_set=pa.array(list(BENEFIT_TYPES), type=values.type))
    codes: npt.NDArray[np.int32] = np.asarray(
        found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int32
    )
    return codes


def _key(name: str, key: str) -> str:
    return f"levels.{key}" if name == "levels" else f"levels.overrides.{name}.{key}"


def _recent_key(name: str) -> str:
    return "windows.recent" if name == "levels" else f"levels.overrides.{name}.recent"
