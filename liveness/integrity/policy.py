"""The integrity policy (config/integrity.toml): which rules run, and their thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator

from liveness.policy_files import PolicyModel, load_policy

RULES = (
    "shared_bank_account",
    "shared_phone",
    "deregistered_number",
    "same_demographics",
    "activity_after_death",
    "face_pass_after_death",
    "same_face_id",
    "two_region_certification",
)
# Review outcomes that say where a person is: seen alive at home, or gone to a named region.
PLACING_OUTCOMES = ("alive_confirmed", "moved_away")
# Counts and days are never negative; a group of "shared" anything needs two persons at least.
Count = Annotated[int, Field(ge=0)]
Group = Annotated[int, Field(ge=2)]


class SharedValueRule(PolicyModel):
    """A rule that flags one account or phone shared by several persons."""

    enabled: bool
    min_persons: Group


class DeregisteredNumberRule(PolicyModel):
    """Numbers cancelled or replaced that still draw a benefit."""

    enabled: bool
    cancelled_reasons: list[str]
    flag_new_number_on_roll: bool


class SameDemographicsRule(PolicyModel):
    """Same name, sex and birth date under distinct numbers."""

    enabled: bool
    same_region: bool


class ActivityAfterDeathRule(PolicyModel):
    """Traces of a person's own acts after their recorded death."""

    enabled: bool
    sources: list[str]
    ignored_kinds: list[str]
    grace_days: Count
    min_traces: Count
    max_listed: Count


class FacePassAfterDeathRule(PolicyModel):
    """A face verification passed after the person's recorded death."""

    enabled: bool
    pass_kinds: list[str]
    grace_days: Count


class SameFaceIdRule(PolicyModel):
    """One face template passing for several persons."""

    enabled: bool
    pass_kinds: list[str]
    window_days: Count
    min_persons: Group
    max_listed: Count


class TwoRegionRule(PolicyModel):
    """Review outcomes placing one person in two regions at once."""

    enabled: bool
    window_days: Count
    outcomes: list[str]
    max_listed: Count

    @field_validator("outcomes")
    @classmethod
    def _placing(cls, outcomes: list[str]) -> list[str]:
        unplacing = set(outcomes) - set(PLACING_OUTCOMES)
        if unplacing:
            raise ValueError(f"{', '.join(sorted(unplacing))} place no one")
        return outcomes


class OrdersTable(PolicyModel):
    """Inspection orders made from leads."""

    due_days: Count


class IntegrityFile(PolicyModel):
    """The tables of config/integrity.toml, one per rule and one for orders."""

    shared_bank_account: SharedValueRule
    shared_phone: SharedValueRule
    deregistered_number: DeregisteredNumberRule
    same_demographics: SameDemographicsRule
    activity_after_death: ActivityAfterDeathRule
    face_pass_after_death: FacePassAfterDeathRule
    same_face_id: SameFaceIdRule
    two_region_certification: TwoRegionRule
    orders: OrdersTable


# Every rule has its table.
assert set(IntegrityFile.model_fields) == {*RULES, "orders"}


@dataclass(frozen=True)
class IntegrityPolicy:
    """Thresholds of every integrity rule, and the policy file's version."""

    version: str
    settings: dict[str, dict[str, Any]]

    def enabled(self, rule: str) -> bool:
        """Return whether `rule` runs."""
        return bool(self.settings[rule]["enabled"])

    def get(self, rule: str, key: str) -> Any:
        """Return one setting of one rule."""
        return self.settings[rule][key]


def load_integrity_policy(path: Path) -> IntegrityPolicy:
    """Read and validate config/integrity.toml."""
    loaded = load_policy(path, IntegrityFile, what="integrity policy")
    return IntegrityPolicy(version=loaded.version, settings=loaded.model.model_dump())
