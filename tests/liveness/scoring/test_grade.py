from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from liveness.scoring import (
    LEVELS,
    RULES,
    EvidenceFeatures,
    Grades,
    ScoringPolicy,
    compute_features,
    grade,
    load_policy,
    post_death_traces,
)

POLICY_PATH = Path(__file__).parents[3] / "config" / "scoring.toml"
AS_OF = 20_453  # 2025-12-31


@pytest.fixture(scope="module")
def policy() -> ScoringPolicy:
    return load_policy(POLICY_PATH)


@dataclass
class Outcome:
    features: EvidenceFeatures
    grades: Grades
    post_death: np.ndarray

    def level(self, person: int = 0) -> str:
        return LEVELS[self.grades.level[person]]

    def rule(self, person: int = 0) -> str:
        return RULES[self.grades.rule[person]]


def run(
    policy: ScoringPolicy,
    traces: list[tuple[int, str, int]],
    *,
    n_persons: int = 1,
    benefit: str = "enterprise_pension",
    death: dict[int, int] | None = None,
    degraded: tuple[str, ...] = (),
) -> Outcome:
    """Grade persons from (person, "source.kind", days before as_of) triples."""
    codes = [policy.kind_index[tuple(k.split("."))] for _, k, _ in traces]  # type: ignore[index]
    kind = np.array(codes, dtype=np.int16)
    person = np.array([p for p, _, _ in traces], dtype=np.int32)
    day = np.array([AS_OF - ago for _, _, ago in traces], dtype=np.int32)
    death_day = np.full(n_persons, -1, dtype=np.int32)
    for p, ago in (death or {}).items():
        death_day[p] = AS_OF - ago
    features = compute_features(
        person_idx=person,
        source_code=policy.source_of_kind[kind],
        kind_code=kind,
        day=day,
        n_persons=n_persons,
        as_of_day=AS_OF,
        policy=policy,
    )
    grades = grade(
        features=features,
        benefit_type=np.array([benefit] * n_persons, dtype=object),
        death_day=death_day,
        degraded=np.array([s in degraded for s in policy.sources]),
        policy=policy,
    )
    post = post_death_traces(
        person_idx=person, kind_code=kind, day=day, death_day=death_day, policy=policy
    )
    return Outcome(features, grades, post)


def test_death_record_is_deceased_even_with_traces(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "face.pass_app", 5), (0, "medical.outpatient", 3)], death={0: 10})
    assert (out.level(), out.rule()) == ("deceased", "death_record")
    assert out.grades.score[0] == 0
    assert out.post_death[0] == 2


def test_post_death_traces_do_not_resurrect(policy: ScoringPolicy) -> None:
    traces = [(0, "transit.tap_face", ago) for ago in range(1, 30)]
    traces += [(0, "card_txn.pos_pin", ago) for ago in range(1, 30)]
    out = run(policy, traces, death={0: 40})
    assert out.level() == "deceased"
    assert out.post_death[0] == 58


def test_face_pass_settles_strong(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "face.pass_kiosk", 20)])
    assert (out.level(), out.rule()) == ("strong", "face_pass")
    assert out.grades.score[0] == 1


@pytest.mark.parametrize("kind", ["face.pass_proxy", "face.fail", "face.no_liveness"])
def test_other_face_results_do_not_settle(policy: ScoringPolicy, kind: str) -> None:
    out = run(policy, [(0, kind, 20)])
    assert out.level() != "strong"


def test_face_pass_outside_recent_window_does_not_settle(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "face.pass_app", 120)])
    assert out.rule() != "face_pass"


def test_two_sources_strong_one_medium_none_weak(policy: ScoringPolicy) -> None:
    out = run(
        policy,
        [
            (0, "transit.tap_face", 10),
            (0, "medical.outpatient", 30),
            (1, "medical.outpatient", 30),
        ],
        n_persons=3,
    )
    assert (out.level(0), out.rule(0)) == ("strong", "sources_strong")
    assert (out.level(1), out.rule(1)) == ("medium", "sources_medium")
    assert (out.level(2), out.rule(2)) == ("weak", "no_evidence")
    assert out.grades.score[2] == 0
    assert out.grades.score[0] > out.grades.score[1] > out.grades.score[2]


def test_auto_debit_alone_is_weak(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "card_txn.auto_debit", ago) for ago in range(1, 200, 5)])
    assert (out.level(), out.rule()) == ("weak", "no_evidence")


def test_taps_without_face_count_less_than_with(policy: ScoringPolicy) -> None:
    base = [(0, "medical.outpatient", 10), (1, "medical.outpatient", 10)]
    out = run(policy, [*base, (0, "transit.tap", 5), (1, "transit.tap_face", 5)], n_persons=2)
    assert out.level(0) == "medium"  # one unverified tap does not make transit agree
    assert out.level(1) == "strong"
    many = run(policy, [*base[:1], *((0, "transit.tap", ago) for ago in range(1, 9))])
    assert many.level() == "strong"  # a habit of taps does


def test_long_window_only_is_medium(policy: ScoringPolicy) -> None:
    traces = [(0, "medical.outpatient", 200), (0, "transit.tap_face", 250)]
    out = run(policy, [*traces, (1, "medical.outpatient", 200)], n_persons=2)
    assert (out.level(0), out.rule(0)) == ("medium", "long_window")
    assert (out.level(1), out.rule(1)) == ("weak", "no_evidence")
    assert 0 < out.grades.score[1] < 1 / 3 <= out.grades.score[0]


def test_benefit_override_changes_the_outcome(policy: ScoringPolicy) -> None:
    traces = [(0, "medical.outpatient", 120), (0, "transit.tap_face", 150)]
    enterprise = run(policy, traces, benefit="enterprise_pension")
    resident = run(policy, traces, benefit="resident_pension")
    assert enterprise.rule() == "long_window"
    assert (resident.level(), resident.rule()) == ("strong", "sources_strong")
    assert resident.grades.recent_days[0] == 180


def test_levels_and_scores_are_consistent_on_random_data(policy: ScoringPolicy) -> None:
    rng = np.random.default_rng(7)
    n = 500
    kinds = [f"{s}.{k}" for s, k in policy.kinds]
    traces = [
        (int(p), kinds[int(k)], int(a))
        for p, k, a in zip(
            rng.integers(0, n, 3000),
            rng.integers(0, len(kinds), 3000),
            rng.integers(0, 400, 3000),
            strict=True,
        )
    ]
    out = run(policy, traces, n_persons=n, degraded=("card_txn",))
    score, level = out.grades.score, out.grades.level
    assert ((score >= 0) & (score <= 1)).all()
    strong, medium, weak = (level == LEVELS.index(x) for x in ("strong", "medium", "weak"))
    assert (score[strong] >= 2 / 3 - 1e-6).all()
    assert ((score[medium] >= 1 / 3 - 1e-6) & (score[medium] <= 2 / 3 + 1e-6)).all()
    assert (score[weak] < 1 / 3).all()
    assert strong.any() and medium.any() and weak.any()


def test_degraded_source_silence_lowers_nobody(policy: ScoringPolicy) -> None:
    # Person 0 paid by PIN every month until the card feed collapsed 60 days ago.
    traces = [(0, "card_txn.pos_pin", ago) for ago in range(95, 360, 30)]
    traces += [(0, "medical.outpatient", 20)]
    # Person 1 never used the card: an outage says nothing about them.
    traces += [(1, "medical.outpatient", 20)]
    healthy = run(policy, traces, n_persons=2)
    outage = run(policy, traces, n_persons=2, degraded=("card_txn",))
    assert healthy.level(0) == "medium"
    assert (outage.level(0), outage.rule(0)) == ("strong", "sources_strong")
    card = policy.sources.index("card_txn")
    assert outage.grades.credited[0, card] and outage.grades.agreeing[0, card]
    assert outage.level(1) == healthy.level(1) == "medium"
    assert not outage.grades.credited[1].any()


def test_degraded_source_that_already_agrees_is_not_credited(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "card_txn.pos_pin", 3)], degraded=("card_txn",))
    assert out.grades.agreeing[0].sum() == 1
    assert not out.grades.credited.any()


def test_grade_checks_lengths(policy: ScoringPolicy) -> None:
    out = run(policy, [], n_persons=2)
    with pytest.raises(ValueError, match="degraded"):
        grade(
            features=out.features,
            benefit_type=np.array(["x", "y"], dtype=object),
            death_day=np.array([-1, -1], dtype=np.int32),
            degraded=np.array([False]),
            policy=policy,
        )
