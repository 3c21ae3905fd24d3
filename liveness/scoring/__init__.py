"""Scoring: policy, evidence features, grades and their reasons."""

from liveness.scoring.explain import (
    Explainer,
    fill_reasons,
    reasons_for,
    reasons_frame,
    render_reasons,
)
from liveness.scoring.features import EvidenceFeatures, compute_features, post_death_traces
from liveness.scoring.grade import (
    LEVEL_OF_RULE,
    LEVELS,
    NO_LEVEL,
    RULES,
    Grades,
    grade,
    level_codes,
)
from liveness.scoring.policy import (
    BENEFIT_TYPES,
    KIND_VOCABULARY,
    LevelRules,
    PolicyError,
    ScoringPolicy,
    benefit_rule_codes,
    benefit_type_codes,
    load_policy,
    parse_policy,
)

__all__ = [
    "BENEFIT_TYPES",
    "KIND_VOCABULARY",
    "LEVELS",
    "LEVEL_OF_RULE",
    "NO_LEVEL",
    "RULES",
    "EvidenceFeatures",
    "Explainer",
    "Grades",
    "LevelRules",
    "PolicyError",
    "ScoringPolicy",
    "benefit_rule_codes",
    "benefit_type_codes",
    "compute_features",
    "fill_reasons",
    "grade",
    "level_codes",
    "load_policy",
    "parse_policy",
    "post_death_traces",
    "reasons_for",
    "reasons_frame",
    "render_reasons",
]
