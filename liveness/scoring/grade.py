"""Grade every person from their evidence features: level, score and the rule that decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from liveness.scoring.features import EvidenceFeatures, agreeing_groups, group_columns
from liveness.scoring.policy import ScoringPolicy, benefit_rule_codes

__all__ = ["LEVELS", "LEVEL_OF_RULE", "NO_LEVEL", "RULES", "Grades", "grade", "level_codes"]

LEVELS: tuple[str, ...] = ("strong", "medium", "weak", "deceased")
# In order of precedence: the first rule that holds decides.
RULES: tuple[str, ...] = (
    "death_record",
    "face_pass",
    "institution",
    "sources_strong",
    "sources_medium",
    "long_window",
    "no_evidence",
)
LEVEL_OF_RULE: npt.NDArray[np.int8] = np.array(
    [
        LEVELS.index(x)
        for x in ("deceased", "strong", "strong", "strong", "medium", "medium", "weak")
    ],
    dtype=np.int8,
)
# A person without a level at the previous run (new on the roll, or no run yet).
NO_LEVEL = -1
# How high each of LEVELS stands among the living; deceased is no level to keep.
_RANK = np.array([2, 1, 0, NO_LEVEL], dtype=np.int8)


def level_codes(levels: npt.NDArray[Any]) -> npt.NDArray[np.int8]:
    """Return the index into LEVELS of each level name; NO_LEVEL for a missing or unknown one."""
    names = np.asarray(levels, dtype=object)
    codes = np.full(names.shape, NO_LEVEL, dtype=np.int8)
    for code, name in enumerate(LEVELS):
        codes[names == name] = code
    return codes


@dataclass(frozen=True, eq=False)
class Grades:
    """Hold each person's level, score, deciding rule and the facts their reasons cite.

    ``recent_days`` and ``recent_weight`` are the window that applied to the person (it differs
    by benefit type). ``held`` marks persons whose level a degraded source's silence would have
    lowered below their previous level (``previous_level``, NO_LEVEL for none): the level is
    kept up to it from their history before the outage; ``credited`` marks the degraded sources
    so counted, and ``agreeing`` includes them. ``certifiable`` is strong by the data alone (or
    by a face pass): a held strong level is never certified silently. ``in_care`` marks the
    institution sources whose records reached the policy's weight for the person.
    """

    policy_version: str
    level: npt.NDArray[np.int8]
    score: npt.NDArray[np.float32]
    rule: npt.NDArray[np.int8]
    agreeing: npt.NDArray[np.bool_]
    credited: npt.NDArray[np.bool_]
    recent_days: npt.NDArray[np.int32]
    recent_weight: npt.NDArray[np.float32]
    death_day: npt.NDArray[np.int32]
    degraded: npt.NDArray[np.bool_]
    held: npt.NDArray[np.bool_]
    previous_level: npt.NDArray[np.int8]
    certifiable: npt.NDArray[np.bool_]
    in_care: npt.NDArray[np.bool_]


# Long by design: the policy's grading rules in the order they apply, over whole arrays.
def grade(
    *,
    features: EvidenceFeatures,
    benefit_type: npt.NDArray[Any],
    death_day: npt.NDArray[np.int32],
    degraded: npt.NDArray[np.bool_],
    previous_level: npt.NDArray[np.int8],
    policy: ScoringPolicy,
) -> Grades:
    """Grade every person; ``benefit_type`` is strings, or int codes into ``BENEFIT_TYPES``.

    ``previous_level`` is each person's level at the previous published run, as an index into
    LEVELS (NO_LEVEL for none). A degraded source's silence lowers nobody below it, and raises
    nobody: the level is the level by the data alone, or, where the person showed enough of a
    degraded source before its outage, up to the lower of their previous level and the level
    with that source counted as agreeing.

    The score is in [0, 1] and banded by level so that it orders people across levels:
    deceased 0; weak [0, 1/3) by long-window weight against ``long_min_weight``; medium
    [1/3, 2/3] and strong [2/3, 1] by recent support, the sum over independence groups of
    the largest min(weight / min_weight, 1) of their sources, against ``strong_sources`` and
    the number of groups. A settling face pass scores 1. Sources agree by independence
    group: two sources of one group (the same acts recorded twice) count as one. An
    institution's care records whose recent weight reaches the policy's ``institution``
    weight make the person strong alone; a degraded one whose records over the long window
    reach it keeps a level up to strong, like a degraded source, and raises nobody.
    """
    n = features.n_persons
    n_sources = len(policy.sources)
    n_groups = len(policy.groups)
    degraded = np.asarray(degraded, dtype=np.bool_)
    previous_level = np.asarray(previous_level, dtype=np.int8)
    if (
        len(benefit_type) != n
        or len(death_day) != n
        or len(previous_level) != n
        or degraded.shape != (n_sources,)
    ):
        raise ValueError(
            "benefit_type, death_day and previous_level need one element per person, "
            "degraded one per source"
        )

    rules = policy.rules
    rule_set = benefit_rule_codes(benefit_type=benefit_type, policy=policy)
    recent_days = np.array([r.recent for r in rules], dtype=np.int32)[rule_set]
    min_weight = np.array([r.min_weight for r in rules], dtype=np.float32)[rule_set]
    strong_sources = np.array([r.strong_sources for r in rules], dtype=np.int16)[rule_set]
    long_min = np.array([r.long_min_weight for r in rules], dtype=np.float32)[rule_set]

    recent_weight = _recent_weight(features, rule_set=rule_set, policy=policy)
    threshold = min_weight[:, None]
    by_data = recent_weight >= threshold
    # Outage guard: whoever showed enough of a degraded source over the long window (which
    # reaches back before the outage) may have it counted as agreeing, but only to keep a level.
    creditable = np.zeros(by_data.shape, dtype=np.bool_)
    for code in np.flatnonzero(degraded):
        creditable[:, code] = ~by_data[:, code] & (features.long_weight[:, code] >= min_weight)

    as_of = features.as_of_day
    dead = death_day >= 0
    face = features.face_pass_day > as_of - recent_days
    long_total = features.long_weight.sum(axis=1, dtype=np.float32)
    in_care = _in_care(recent_weight, rule_set=rule_set, policy=policy)

    def rule_by(n_agreeing: npt.NDArray[np.integer[Any]], cared: Any) -> npt.NDArray[np.int8]:
        conditions = [
            dead,
            face,
            cared,
            n_agreeing >= strong_sources,
            n_agreeing >= 1,
            long_total >= long_min,
        ]
        # The first condition that holds chooses (np.select's rule), written as int8 directly.
        chosen = np.full(n, len(conditions), dtype=np.int8)
        for code in reversed(range(len(conditions))):
            np.copyto(chosen, np.int8(code), where=conditions[code])
        return chosen

    rule_by_data = rule_by(agreeing_groups(by_data, policy), in_care.any(axis=1))
    rank_by_data = _RANK[LEVEL_OF_RULE[rule_by_data]]
    rank_credited = rank_by_data  # without a degraded source, nothing is credited
    if degraded.any():
        # The outage guard for institutions too: a degraded one whose records over the long
        # window reach its weight may keep a level, never raise one.
        care_credit = in_care | (
            degraded[None, :] & _in_care(features.long_weight, rule_set=rule_set, policy=policy)
        )
        rule_credited = rule_by(
            agreeing_groups(by_data | creditable, policy), care_credit.any(axis=1)
        )
        rank_credited = _RANK[LEVEL_OF_RULE[rule_credited]]
    known = previous_level >= 0
    rank_before = np.where(known, _RANK[np.where(known, previous_level, 0)], NO_LEVEL)
    rank = np.maximum(rank_by_data, np.minimum(rank_credited, rank_before))
    # The living only: a death record decides alike with or without credit.
    held = ~dead & (rank > rank_by_data)
    strong_rank = _RANK[LEVELS.index("strong")]
    rule = np.where(
        held,
        np.where(
            rank == strong_rank,
            np.int8(RULES.index("sources_strong")),
            np.int8(RULES.index("sources_medium")),
        ),
        rule_by_data,
    ).astype(np.int8)
    level = LEVEL_OF_RULE[rule]
    credited = creditable & held[:, None]
    agreeing = by_data | credited
    certifiable = (level == LEVELS.index("strong")) & ~held

    # Each source's support, min(weight / min_weight, 1), or 1 where credited.
    per_source = recent_weight / threshold
    np.minimum(per_source, np.float32(1), out=per_source)
    np.copyto(per_source, np.float32(1), where=credited)
    support = _group_support(per_source, policy)
    third = np.float32(1 / 3)
    score = np.select(
        [
            dead,
            face,
            level == LEVELS.index("strong"),
            level == LEVELS.index("medium"),
        ],
        [
            np.float32(0),
            np.float32(1),
            2 * third + third * np.minimum(support / n_groups, 1),
            third + third * np.minimum(support / strong_sources, 1),
        ],
        default=third * np.minimum(long_total / long_min, 1),
    ).astype(np.float32)

    return Grades(
        policy_version=policy.version,
        level=level,
        score=score,
        rule=rule,
        agreeing=agreeing,
        credited=credited,
        recent_days=recent_days,
        recent_weight=recent_weight,
        death_day=np.asarray(death_day, dtype=np.int32),
        degraded=degraded,
        held=held,
        previous_level=previous_level,
        certifiable=certifiable,
        in_care=in_care,
    )


def _in_care(
    recent_weight: npt.NDArray[np.float32],
    *,
    rule_set: npt.NDArray[np.int8],
    policy: ScoringPolicy,
) -> npt.NDArray[np.bool_]:
    """Mark, per person and source, the institution records that reach their rule set's weight."""
    in_care = np.zeros(recent_weight.shape, dtype=np.bool_)
    named = [s for s in policy.sources if any(s in r.institution for r in policy.rules)]
    for source in named:
        # One column per institution source: each rule set's weight for it (inf: none).
        minimum = np.array(
            [r.institution.get(source, np.inf) for r in policy.rules], dtype=np.float32
        )[rule_set]
        code = policy.sources.index(source)
        in_care[:, code] = recent_weight[:, code] >= minimum
    return in_care


def _group_support(
    per_source: npt.NDArray[np.floating[Any]], policy: ScoringPolicy
) -> npt.NDArray[np.float32]:
    """Sum, per person, the support of each independence group: its best source's."""
    if len(policy.groups) == per_source.shape[1]:
        return per_source.sum(axis=1, dtype=np.float32)
    support = np.zeros(per_source.shape[0], dtype=np.float32)
    for best in group_columns(per_source, policy, np.maximum):
        support += best
    return support


def _recent_weight(
    features: EvidenceFeatures, *, rule_set: npt.NDArray[np.int8], policy: ScoringPolicy
) -> npt.NDArray[np.float32]:
    """Return each person's weights per source in their own rule set's recent window."""
    windows = policy.recent_windows
    if len(windows) == 1:
        return features.window_weight[0]
    window_of_set = np.array([windows.index(r.recent) for r in policy.rules], dtype=np.intp)
    window = window_of_set[rule_set]
    # Whole rows picked window by window: a gather by (window, person) costs several times more.
    recent_weight = features.window_weight[0].copy()
    for code in range(1, len(windows)):
        np.copyto(recent_weight, features.window_weight[code], where=(window == code)[:, None])
    return recent_weight
