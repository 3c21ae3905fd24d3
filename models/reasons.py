"""Reasons stored compactly: codes and numbers in a short JSON list, the same dict on read.

A run's reasons for a person are a dict (`liveness.scoring.explain.reasons_frame`): the policy,
level, rule, score, the windows, and per source its last day, recent weight, whether it agrees
and, where it applies, its independence group and a credited outage. Written as such they cost
about 500 bytes a person, mostly key names repeated on every row. `CompactReasons` stores the
same facts positionally,

    [1, policy, level, rule, score, window, long, [[source, day, weight, flags(, group)], ...]
     (, {other keys})]

with the last day as a day number (days since 1970-01-01) and `flags` 1 for agrees, 2 for a
credited outage: about 200 bytes. Reading gives back the very dict that was written (keys in
the order the explainer builds them). A dict of any other shape (a departed person's `{}`, a
row written before this format) is stored and read as it is, so old rows need no migration.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.types import TypeDecorator

PACKED = 1
_EPOCH = dt.date(1970, 1, 1)
_HEAD = ("policy", "level", "rule", "score", "window", "long")
_ORDER = [*_HEAD, "sources"]
_SOURCE_KEYS = frozenset({"last", "recent_weight", "agrees", "group", "degraded"})
_AGREES, _DEGRADED = 1, 2


@cache
def _day_of(iso: str) -> int | None:
    """Return the day number of an ISO date, None where it would not read back the same."""
    try:
        day = (dt.date.fromisoformat(iso) - _EPOCH).days
    except ValueError:
        return None
    return day if _iso_of(day) == iso else None


@cache
def _iso_of(day: int) -> str:
    """Return the ISO date of a day number (a run's reasons cite a few hundred distinct days)."""
    return (_EPOCH + dt.timedelta(days=day)).isoformat()


def _packed_sources(sources: dict[str, Any]) -> list[list[Any]] | None:
    """Return each source's entry as [name, day, weight, flags(, group)], None if unusual."""
    packed: list[list[Any]] = []
    day_of = _day_of
    for name, entry in sources.items():
        # One loop, no call per source: a first run packs a million persons' reasons.
        if type(entry) is not dict or not entry.keys() <= _SOURCE_KEYS:
            return None
        last, weight, agrees = entry.get("last"), entry.get("recent_weight"), entry.get("agrees")
        if type(last) is not str or type(weight) is not float or type(agrees) is not bool:
            return None
        day = day_of(last)
        if day is None:
            return None
        flags = _AGREES if agrees else 0
        if "degraded" in entry:
            if entry["degraded"] is not True:
                return None  # only `degraded: true` is ever written
            flags |= _DEGRADED
        if "group" in entry:
            group = entry["group"]
            if type(group) is not str:
                return None
            packed.append([name, day, weight, flags, group])
        else:
            packed.append([name, day, weight, flags])
    return packed


def pack_reasons(reasons: Any) -> Any:
    """Return the compact form of a run's reasons, or the value as it is if of another shape."""
    # Only the explainer's dicts are packed: the head, then the sources, in that order (only
    # then does the read give the keys back in their order).
    if type(reasons) is not dict or list(reasons)[: len(_ORDER)] != _ORDER:
        return reasons
    sources = reasons["sources"]
    packed = _packed_sources(sources) if type(sources) is dict else None
    if packed is None:
        return reasons
    values = list(reasons.values())
    head = values[: len(_HEAD)]
    if len(values) == len(_ORDER):
        return [PACKED, *head, packed]
    rest = dict(list(reasons.items())[len(_ORDER) :])
    return [PACKED, *head, packed, rest]


def unpack_reasons(value: Any) -> Any:
    """Return the reasons dict of a stored value (compact or as written)."""
    if not (isinstance(value, list) and value and value[0] == PACKED):
        return value
    reasons: dict[str, Any] = dict(zip(_HEAD, value[1 : 1 + len(_HEAD)], strict=True))
    sources: dict[str, Any] = {}
    for name, day, weight, flags, *group in value[1 + len(_HEAD)]:
        entry: dict[str, Any] = {
            "last": _iso_of(day),
            "recent_weight": weight,
            "agrees": bool(flags & _AGREES),
        }
        if group:
            entry["group"] = group[0]
        if flags & _DEGRADED:
            entry["degraded"] = True
        sources[name] = entry
    reasons["sources"] = sources
    if len(value) > 2 + len(_HEAD):
        reasons.update(value[2 + len(_HEAD)])
    return reasons


class CompactReasons(TypeDecorator[Any]):
    """A JSON column holding a run's reasons in their compact form (see the module)."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        """Pack the reasons for storage."""
        return pack_reasons(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        """Unpack stored reasons into the dict that was written."""
        return unpack_reasons(value)
