"""Names of regions and community grids beside their codes, from config/areas.toml.

A name is data, not policy: a code without one shows as the bare code, and a missing file
names nothing. Names come in the pages' languages (zh, en).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveness.errors import ConfigurationError
from liveness.policy_files import read_policy_file

LANGUAGES = ("zh", "en")
# region-street-number, as the roll codes grids: 330702-002-05.
GRID_CODE = re.compile(r"^(\d{6})-(\d{1,4})-(\d{1,4})$")

Names = dict[str, str]  # language -> name


@dataclass(frozen=True)
class AreaNames:
    """The names of regions, streets and grids, by code and language."""

    regions: dict[str, Names] = field(default_factory=dict)
    streets: dict[str, list[Names]] = field(default_factory=dict)
    grids: dict[str, Names] = field(default_factory=dict)
    grid_pattern: Names = field(default_factory=dict)

    def region(self, code: str | None, lang: str) -> str | None:
        """Return a region's (or a prefix's) name in `lang`, or None if it has none."""
        if not code:
            return None
        return self.regions.get(code, {}).get(lang)

    def grid(self, code: str | None, lang: str) -> str | None:
        """Return a grid's name in `lang`: its own, else its street's pattern, else None."""
        if not code:
            return None
        own = self.grids.get(code, {}).get(lang)
        if own is not None:
            return own
        parsed = GRID_CODE.match(code)
        pattern = self.grid_pattern.get(lang)
        if parsed is None or pattern is None:
            return None
        region, street, number = parsed.groups()
        streets = self.streets.get(region, [])
        index = int(street) - 1
        if not 0 <= index < len(streets) or lang not in streets[index]:
            return None
        return pattern.format(street=streets[index][lang], grid=int(number))


def _names(value: Any, *, where: str) -> Names:
    """Return a {zh, en} table, refusing anything else."""
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in LANGUAGES):
        raise ConfigurationError(f"{where}: expected a table with zh and en names")
    return {lang: value[lang] for lang in LANGUAGES}


def load_area_names(path: Path) -> AreaNames:
    """Read the names of regions and grids; a missing file names nothing."""
    if not path.exists():
        return AreaNames()
    document = read_policy_file(path, what="area names").document
    pattern = document.get("grid_name")
    return AreaNames(
        regions={
            str(code): _names(value, where=f"{path}: regions.{code}")
            for code, value in document.get("regions", {}).items()
        },
        streets={
            str(code): [
                _names(value, where=f"{path}: streets.{code}[{i}]")
                for i, value in enumerate(values)
            ]
            for code, values in document.get("streets", {}).items()
        },
        grids={
            str(code): _names(value, where=f"{path}: grids.{code}")
            for code, value in document.get("grids", {}).items()
        },
        grid_pattern={} if pattern is None else _names(pattern, where=f"{path}: grid_name"),
    )
