"""The policy folder as a whole: write an editable copy of the shipped one, check a folder.

`liveness init DIR` and `liveness config check [DIR]` are thin boundaries over these two.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.config import load_source_configs
from liveness.access.passwords import load_sign_in_policy
from liveness.certification.policy import load_certification_policy
from liveness.entry.scheduler import load_schedule_policy
from liveness.errors import ConfigurationError, LivenessError
from liveness.estimator.config import load_estimator_config
from liveness.evidence.health import load_health_policy
from liveness.integrity.policy import load_integrity_policy
from liveness.policy_files import file_version
from liveness.scoring.policy import load_policy as load_scoring_policy
from liveness.settings import PACKAGED_CONFIG
from liveness.views.area_names import load_area_names

__all__ = ["POLICY_FILES", "PolicyCheck", "check_policy_folder", "write_policy_copy"]

# Every policy file of a configuration folder, and the loader that validates it.
POLICY_FILES: dict[str, Callable[[Path], object]] = {
    "access.toml": load_sign_in_policy,
    "areas.toml": load_area_names,
    "certification.toml": load_certification_policy,
    "estimator.toml": load_estimator_config,
    "health.toml": load_health_policy,
    "integrity.toml": load_integrity_policy,
    "schedule.toml": load_schedule_policy,
    "scoring.toml": load_scoring_policy,
    "sources.toml": load_source_configs,
}
# Files a folder may go without: no area names means codes are shown bare.
OPTIONAL_FILES = frozenset({"areas.toml"})


@dataclass(frozen=True)
class PolicyCheck:
    """One file's check: its version if it is valid, else the error, in one line."""

    name: str
    path: Path
    version: str | None
    error: str | None


def check_policy_folder(folder: Path) -> list[PolicyCheck]:
    """Validate every policy file of `folder`; return each one's version or error."""
    checks = []
    for name, load in POLICY_FILES.items():
        path = folder / name
        if not path.is_file() and name in OPTIONAL_FILES:
            continue
        if not path.is_file():
            checks.append(PolicyCheck(name, path, None, f"{path}: missing"))
            continue
        try:
            load(path)
        except LivenessError as error:
            checks.append(PolicyCheck(name, path, None, str(error)))
            continue
        checks.append(PolicyCheck(name, path, file_version(path.read_bytes()), None))
    return checks


def write_policy_copy(folder: Path, *, force: bool = False) -> list[Path]:
    """Copy the shipped policy files into `folder`, refusing to overwrite unless `force`."""
    targets = [folder / name for name in POLICY_FILES]
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise ConfigurationError(
            f"{existing[0]} exists ({len(existing)} of the policy files do); "
            "nothing was written (--force overwrites them)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for target in targets:
        # Byte for byte: the copy keeps its comments and starts at the shipped versions.
        shutil.copyfile(PACKAGED_CONFIG / target.name, target)
    return targets
