"""Reasons for each grade, as compact JSON-able dicts, and their rendering for grid workers."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from liveness.scoring.features import EvidenceFeatures
from liveness.scoring.grade import LEVELS, RULES, Grades
from liveness.scoring.policy import ScoringPolicy
from liveness.sources import BUILTIN_TRACES, source_labels, traces_beside

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Explainer", "fill_reasons", "reasons_for", "reasons_frame", "render_reasons"]


@cache
def _source_names(lang: str) -> dict[str, str]:
    """Return the sources in words: the built-in ones and those the shipped file declares.

    A deployment's own declared sources are named by `render_reasons`' `labels`.
    """
    return source_labels({**BUILTIN_TRACES, **traces_beside(None)}, lang)


_LEVEL_NAMES: dict[str, dict[str, str]] = {
    "zh": {"strong": "强", "medium": "中", "weak": "弱", "deceased": "已故"},
    "en": {"strong": "strong", "medium": "medium", "weak": "weak", "deceased": "deceased"},
}


def reasons_for(
    *,
    grades: Grades,
    features: EvidenceFeatures,
    index: int,
    as_of_day: int,
    policy: ScoringPolicy,
    post_death: npt.NDArray[np.int32],
) -> dict[str, Any]:
    """Build the reasons of one person."""
    return reasons_frame(
        grades=grades,
        features=features,
        as_of_day=as_of_day,
        policy=policy,
        post_death=post_death,
        persons=np.array([index], dtype=np.intp),
    )[0]


# Long by design: one pass per source over plain lists, kept together for speed (1M rows).
def reasons_frame(
    *,
    grades: Grades,
    features: EvidenceFeatures,
    as_of_day: int,
    policy: ScoringPolicy,
    post_death: npt.NDArray[np.int32],
    persons: npt.NDArray[np.intp] | None = None,
) -> list[dict[str, Any]]:
    """Build the reasons of every person (or of ``persons``), in person order.

    Each dict holds ``policy``, ``level``, ``rule``, ``score``, ``window`` (recent days that
    applied), ``long``, and ``sources``: for each source with any evidence, ``last`` (ISO
    date), ``recent_weight`` and ``agrees`` (plus ``degraded: true`` where the source's
    outage was credited; ``group`` where the source agrees with another as one, in the group
    of that name). Present only when they apply: ``degraded`` (credited source names)
    with ``kept_from`` (the previous level the credit kept the level up to), ``face_pass``
    (ISO date), ``death`` (ISO date) and ``post_death_traces``, and ``institution`` (the
    institution sources whose records alone made the person strong) under that rule.
    """
    sel = np.arange(features.n_persons) if persons is None else np.asarray(persons)
    last = features.last_day[sel]
    death = grades.death_day[sel]
    face = features.face_pass_day[sel]
    dates = _iso_dates(np.concatenate([last.ravel(), death, face]), as_of_day=as_of_day)

    names = policy.sources
    with _gc_paused():
        out = [
            {
                "policy": grades.policy_version,
                "level": lv,
                "rule": ru,
                "score": sc,
                "window": w,
                "long": policy.long,
                "sources": {},
            }
            for lv, ru, sc, w in zip(
                np.asarray(LEVELS, dtype=object)[grades.level[sel]].tolist(),
                np.asarray(RULES, dtype=object)[grades.rule[sel]].tolist(),
                np.round(grades.score[sel].astype(np.float64), 3).tolist(),
                grades.recent_days[sel].tolist(),
                strict=True,
            )
        ]
        # Source by source, touching only the persons with evidence from it: every loop
        # below runs over plain Python lists made by one vectorised step each.
        for s, name in enumerate(names):
            has = np.flatnonzero(last[:, s] >= 0)
            rows = [out[i]["sources"] for i in has.tolist()]
            last_iso = dates(last[has, s]).tolist()
            weight = np.round(grades.recent_weight[sel[has], s].astype(np.float64), 2).tolist()
            agrees = grades.agreeing[sel[has], s].tolist()
            for row, d, w, a in zip(rows, last_iso, weight, agrees, strict=True):
                row[name] = {"last": d, "recent_weight": w, "agrees": a}
            group = policy.groups[policy.group_of_source[s]]
            if group != name:
                for row in rows:
                    row[name]["group"] = group
            for i in np.flatnonzero(grades.credited[sel, s]).tolist():
                out[i]["sources"][name]["degraded"] = True
                out[i].setdefault("degraded", []).append(name)
        cared = grades.rule[sel] == RULES.index("institution")
        if cared.any():
            for s, name in enumerate(names):
                for i in np.flatnonzero(cared & grades.in_care[sel, s]).tolist():
                    out[i].setdefault("institution", []).append(name)
        held = np.flatnonzero(grades.held[sel])
        before = np.asarray(LEVELS, dtype=object)[grades.previous_level[sel[held]]].tolist()
        for i, previous in zip(held.tolist(), before, strict=True):
            out[i]["kept_from"] = previous
        passed = np.flatnonzero(face >= 0)
        for i, d in zip(passed.tolist(), dates(face[passed]).tolist(), strict=True):
            out[i]["face_pass"] = d
        dead = np.flatnonzero(death >= 0)
        for i, d, k in zip(
            dead.tolist(), dates(death[dead]).tolist(), post_death[sel[dead]].tolist(), strict=True
        ):
            out[i]["death"] = d
            out[i]["post_death_traces"] = k
    return out


@dataclass(frozen=True, eq=False)
class Explainer:
    """Builds a run's reasons on demand, for the persons (rows of its grades) that need them.

    A night stores the assessments that changed, certifies those due and opens reviews for a
    few: building every person's reasons (a million dicts) would cost more than all of that.
    """

    grades: Grades
    features: EvidenceFeatures
    as_of_day: int
    policy: ScoringPolicy
    post_death: npt.NDArray[np.int32]

    def __call__(self, rows: npt.ArrayLike) -> list[dict[str, Any]]:
        """Return the reasons of the persons at these rows of the run's grades."""
        return reasons_frame(
            grades=self.grades, features=self.features, as_of_day=self.as_of_day,
            policy=self.policy, post_death=self.post_death,
            persons=np.asarray(rows, dtype=np.intp),
        )  # fmt: skip


def fill_reasons(
    frame: pd.DataFrame, explain: Callable[[npt.ArrayLike], list[dict[str, Any]]] | None
) -> pd.Series:
    """Return `frame`'s reasons column, built by `explain` from its `row` where not built yet.

    Rows whose reasons are missing (None) take them from `explain` by their `row` (their
    place in the run's grades); a frame without such rows needs no explainer.
    """
    import pandas as pd

    reasons = frame["reasons"].to_numpy(dtype=object).copy()
    missing = np.flatnonzero(pd.isna(frame["reasons"]).to_numpy())
    if missing.size:
        if explain is None or "row" not in frame:
            raise ValueError(f"{missing.size} persons' reasons were not built and cannot be")
        built = explain(frame["row"].to_numpy()[missing].astype(np.intp))
        for at, why in zip(missing.tolist(), built, strict=True):
            reasons[at] = why
    return pd.Series(reasons, index=frame.index, dtype=object)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small containers."""
    # A million reason dicts trigger repeated full-heap collections that find nothing to
    # free (none of these objects form cycles) and cost about 5x the building itself.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Long by design: one sentence per rule in two languages, read as the worker sees it.
def render_reasons(
    reasons: dict[str, Any],
    *,
    lang: Literal["zh", "en"],
    labels: Mapping[str, str] | None = None,
) -> str:
    """Render one person's reasons as a sentence a grid worker can read.

    `labels` names sources in words (a declared source's label, in `lang`); the built-in
    sources have theirs, any other shows its name.
    """
    zh = lang == "zh"
    names = {**_source_names(lang), **(labels or {})}
    level = _LEVEL_NAMES[lang][reasons["level"]]
    rule = reasons["rule"]
    window, long = reasons["window"], reasons["long"]
    sources: dict[str, dict[str, Any]] = reasons.get("sources", {})

    def listing(only_agreeing: bool, only: list[str] | None = None) -> str:
        parts = []
        listed: dict[str, str] = {}  # the first listed source of each independence group
        for name, entry in sources.items():
            if (only_agreeing and not entry["agrees"]) or (only is not None and name not in only):
                continue
            label = names.get(name, name)
            # A source of a group listed before records the same acts: say so.
            first = listed.setdefault(entry.get("group", name), label)
            if zh:
                part = f"{label}：最近{entry['last']}" + (
                    "（数据中断）" if entry.get("degraded") else ""
                )
                part += f"（与{first}同源）" if first != label else ""
            else:
                part = f"{label}: last {entry['last']}" + (
                    " (source degraded)" if entry.get("degraded") else ""
                )
                part += f" (one source with {first})" if first != label else ""
            parts.append(part)
        if not parts:
            return ""
        return "（" + "，".join(parts) + "）" if zh else " (" + "; ".join(parts) + ")"

    if rule == "death_record":
        text = (
            f"{level}：死亡日期{reasons['death']}" if zh else f"{level}: died on {reasons['death']}"
        )
        count = reasons.get("post_death_traces", 0)
        if count:
            text += (
                f"；死亡后仍有{count}条活动痕迹，疑似他人使用"
                if zh
                else f"; {count} traces after death (possible use by someone else)"
            )
        return text
    if rule == "face_pass":
        text = (
            f"{level}：近{window}天本人刷脸认证通过（{reasons['face_pass']}）"
            if zh
            else f"{level}: own face verification passed in the last {window} days "
            f"({reasons['face_pass']})"
        )
    elif rule == "institution":
        # Only the institution's records: the other sources did not decide.
        only = reasons.get("institution")
        cared = listing(only is None, only)
        text = (
            f"{level}：养老/护理机构近{window}天的在护记录" + cared
            if zh
            else f"{level}: in the care of an institution, its records in the last {window} days"
            + cared
        )
    elif rule in ("sources_strong", "sources_medium"):
        # Sources of one group agree as one independent source.
        k = len({e.get("group", name) for name, e in sources.items() if e["agrees"]})
        if zh:
            text = f"{level}：近{window}天有{k}个{'独立' if k > 1 else ''}来源" + listing(True)
        else:
            noun = "independent sources" if k > 1 else "source"
            text = f"{level}: {k} {noun} in the last {window} days" + listing(True)
    elif rule == "long_window":
        text = (
            f"{level}：近{window}天证据不足，近{long}天有活动痕迹"
            if zh
            else f"{level}: too little in the last {window} days, traces in the last {long} days"
        ) + listing(False)
    else:
        text = (
            f"{level}：近{long}天无足够活动痕迹"
            if zh
            else f"{level}: not enough evidence of life in the last {long} days"
        ) + listing(False)
    credited = reasons.get("degraded", [])
    if credited:
        text += _kept(reasons, credited=credited, lang=lang, names=names)
    return text


def _kept(
    reasons: dict[str, Any],
    *,
    credited: list[str],
    lang: Literal["zh", "en"],
    names: Mapping[str, str],
) -> str:
    """Say that a degraded source's silence kept the level, up to the previous one."""
    zh = lang == "zh"
    labels = ("、" if zh else ", ").join(names.get(n, n) for n in credited)
    level = reasons["level"]
    if "kept_from" not in reasons:
        # Stored before credit only kept levels: the source was counted, nothing was kept.
        return (
            f"；{labels}数据中断，按中断前记录计入"
            if zh
            else f"; {labels} source degraded: counted from records before the outage"
        )
    previous = reasons["kept_from"]
    if previous != level:
        before, now = _LEVEL_NAMES[lang][previous], _LEVEL_NAMES[lang][level]
        return (
            f"；{labels}数据中断期间，按中断前记录保持为{now}（上次为{before}）"
            if zh
            else f"; kept at {now} while {labels} {'were' if len(credited) > 1 else 'was'} "
            f"degraded (previous level {before})"
        )
    text = (
        f"；{labels}数据中断期间，保持上次等级"
        if zh
        else f"; kept at its previous level while {labels} "
        f"{'were' if len(credited) > 1 else 'was'} degraded"
    )
    if level == "strong":
        text += "，暂不以数据比对认证" if zh else ": not certified by data until it recovers"
    return text


def _iso_dates(
    days: npt.NDArray[np.int32], *, as_of_day: int
) -> Callable[[npt.NDArray[np.int32]], npt.NDArray[np.object_]]:
    """Return a function mapping day arrays to object arrays of ISO dates (None for -1)."""
    valid = days[days >= 0]
    low = int(valid.min()) if valid.size else as_of_day
    high = max(int(valid.max()) if valid.size else as_of_day, as_of_day)
    # One string per calendar day in range, built once: fancy indexing then does the rest.
    table = np.empty(high - low + 2, dtype=object)
    table[0] = None
    table[1:] = np.datetime_as_string(np.arange(low, high + 1).astype("datetime64[D]"))

    def lookup(values: npt.NDArray[np.int32]) -> npt.NDArray[np.object_]:
        return table[np.where(values >= 0, values - low + 1, 0)]

    return lookup
