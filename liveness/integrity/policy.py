"""The integrity policy (config/integrity.toml): which rules run, and their thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liveness.errors import ConfigurationError
from liveness.policy_files import read_policy_file

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
_KEYS: dict[str, dict[str, type]] = {
    "shared_bank_account": {"enabled": bool, "min_persons": int},
    "shared_phone": {"enabled": bool, "min_persons": int},
    "deregistered_number": {
        "enabled": bool, "cancelled_reasons": list, "flag_new_number_on_roll": bool,
    },
    "same_demographics": {"enabled": bool, "same_region": bool},
    "activity_after_death": {
        "enabled": bool, "sources": list, "ignored_kinds": list, "grace_days": int,
        "min_traces": int, "max_listed": int,
    },
    "face_pass_after_death": {"enabled": bool, "pass_kinds": list, "grace_days": int},
    "same_face_id": {
        "enabled": bool, "pass_kinds": list, "window_days": int, "min_persons": int,
        "max_listed": int,
    },
    "two_region_certification": {
        "enabled": bool, "window_days": int, "outcomes": list, "max_listed": int,
    },
    "orders": {"due_days": int},
}  # fmt: skip


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
    policy_file = read_policy_file(path, what="integrity policy")
    document = policy_file.document
    for section in set(document) - set(_KEYS):
        raise ConfigurationError(f"{path}: [{section}] is not a rule")
    for section, keys in _KEYS.items():
        values = document.get(section)
        if not isinstance(values, dict):
            raise ConfigurationError(f"{path}: [{section}] is missing")
        for key in set(values) - set(keys):
            raise ConfigurationError(f"{path}: {section}.{key} is not a setting")
        for key, kind in keys.items():
            value = values.get(key)
            # bool is an int in Python: an int setting must not accept true/false.
            wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
            if wrong or (isinstance(value, int) and value < 0):
                raise ConfigurationError(f"{path}: {section}.{key} must be a {kind.__name__}")
    for section in ("shared_bank_account", "shared_phone", "same_face_id"):
        if document[section]["min_persons"] < 2:
            raise ConfigurationError(f"{path}: {section}.min_persons must be at least 2")
    unplacing = set(document["two_region_certification"]["outcomes"]) - set(PLACING_OUTCOMES)
    if unplacing:
        raise ConfigurationError(
            f"{path}: two_region_certification.outcomes: {', '.join(sorted(unplacing))} "
            "place no one"
        )
    return IntegrityPolicy(version=policy_file.version, settings=document)
