"""Names of regions and community grids beside their codes, from config/areas.toml.

A name is data, not policy: a code without one shows as the bare code, and a missing file
names nothing. Names come in the pages' languages (zh, en).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from liveness.policy_files import PolicyModel, load_policy

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


class _Name(PolicyModel):
    """One name in the pages' languages."""

    zh: str
    en: str


class _AreasFile(PolicyModel):
    """config/areas.toml: names of regions, streets by region, grids, and the grids' pattern."""

    grid_name: _Name | None = None
    regions: dict[str, _Name] = Field(default_factory=dict)
    streets: dict[str, list[_Name]] = Field(default_factory=dict)
    grids: dict[str, _Name] = Field(default_factory=dict)


def load_area_names(path: Path) -> AreaNames:
    """Read the names of regions and grids; a missing file names nothing."""
    if not path.exists():
        return AreaNames()
    areas = load_policy(path, _AreasFile, what="area names").model
    return AreaNames(
        regions={code: name.model_dump() for code, name in areas.regions.items()},
        streets={
            code: [name.model_dump() for name in names] for code, names in areas.streets.items()
        },
        grids={code: name.model_dump() for code, name in areas.grids.items()},
        grid_pattern={} if areas.grid_name is None else areas.grid_name.model_dump(),
    )
