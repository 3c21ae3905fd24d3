from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liveness.scoring import (
    LEVELS,
    NO_LEVEL,
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
    previous: dict[int, str] | None = None,
) -> Outcome:
    """Grade persons from (person, "source.kind", days before as_of) triples.

    `previous` gives persons' levels at the previous run (the others had none).
    """
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
        previous_level=previous_levels(n_persons, previous or {}),
        policy=policy,
    )
    post = post_death_traces(
        person_idx=person, kind_code=kind, day=day, death_day=death_day, policy=policy
    )
    return Outcome(features, grades, post)


def random_traces(
    policy: ScoringPolicy, *, seed: int, n_persons: int, count: int
) -> list[tuple[int, str, int]]:
    """Draw traces of random persons and kinds, up to 400 days before as_of."""
    rng = np.random.default_rng(seed)
    kinds = [f"{s}.{k}" for s, k in policy.kinds]
    return [
        (int(p), kinds[int(k)], int(a))
        for p, k, a in zip(
            rng.integers(0, n_persons, count),
            rng.integers(0, len(kinds), count),
            rng.integers(0, 400, count),
            strict=True,
        )
    ]


def previous_levels(n_persons: int, levels: dict[int, str]) -> np.ndarray:
    codes = np.full(n_persons, NO_LEVEL, dtype=np.int8)
    for p, level in levels.items():
        codes[p] = LEVELS.index(level)
    return codes


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


def test_an_institutions_records_alone_make_strong(policy: ScoringPolicy) -> None:
    # A nursing home's daily lines, 24 of them (weight 6.0: the policy's) or only 23; a carer's
    # visits, 6 or 5. Long-term care shares the medical group: alone it was one source.
    traces = [(0, "ltc.daily_care", ago) for ago in range(1, 25)]
    traces += [(1, "ltc.daily_care", ago) for ago in range(1, 24)]
    traces += [(2, "ltc.home_visit", ago) for ago in range(5, 90, 15)]
    traces += [(3, "ltc.home_visit", ago) for ago in range(5, 75, 15)]
    # With a hospital visit too: still one group, the institution's records decide.
    traces += [(4, "ltc.daily_care", ago) for ago in range(1, 89)] + [(4, "medical.outpatient", 9)]
    out = run(policy, traces, n_persons=5)
    ltc = policy.sources.index("ltc")
    for person in (0, 2, 4):
        assert (out.level(person), out.rule(person)) == ("strong", "institution")
        assert out.grades.certifiable[person] and not out.grades.held[person]
        assert out.grades.in_care[person].tolist() == [s == ltc for s in range(len(policy.sources))]
        assert 2 / 3 <= out.grades.score[person] <= 1
    for person in (1, 3):
        assert (out.level(person), out.rule(person)) == ("medium", "sources_medium")
        assert not out.grades.certifiable[person] and not out.grades.in_care[person].any()


def test_institution_records_older_than_the_window_do_not_count(policy: ScoringPolicy) -> None:
    traces = [(0, "ltc.daily_care", ago) for ago in range(91, 200)]
    out = run(policy, traces)
    assert (out.level(), out.rule()) == ("medium", "long_window")
    # A resident pension's recent window is 180 days: the same lines are recent there.
    resident = run(policy, traces, benefit="resident_pension")
    assert (resident.level(), resident.rule()) == ("strong", "institution")


def test_a_death_record_wins_over_an_institutions_records(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "ltc.daily_care", ago) for ago in range(1, 60)], death={0: 30})
    assert (out.level(), out.rule()) == ("deceased", "death_record")
    assert not out.grades.certifiable[0]
    assert out.post_death[0] == 29


def test_a_degraded_institution_source_keeps_a_level_and_raises_none(
    policy: ScoringPolicy,
) -> None:
    # Daily lines until the feed collapsed 120 days ago: a resident strong before keeps
    # strong (held, not certifiable), as for any degraded source; one with no level before is
    # raised by nothing (the long window alone: medium).
    traces = [(0, "ltc.daily_care", ago) for ago in range(120, 300)]
    traces += [(1, "ltc.daily_care", ago) for ago in range(120, 300)]
    out = run(policy, traces, n_persons=2, degraded=("ltc",), previous={0: "strong"})
    assert (out.level(0), out.rule(0)) == ("strong", "sources_strong")
    assert out.grades.held[0] and not out.grades.certifiable[0]
    assert (out.level(1), out.rule(1)) == ("medium", "long_window")
    assert not out.grades.held[1] and not out.grades.certifiable[1]


def test_no_institution_table_is_no_such_rule(policy: ScoringPolicy, tmp_path: Path) -> None:
    text = POLICY_PATH.read_text(encoding="utf-8")
    path = tmp_path / "scoring.toml"
    path.write_text(text.replace("institution = { ltc = 6.0 }\n", ""), encoding="utf-8")
    without = load_policy(path)
    assert without.default.institution == {} and policy.default.institution == {"ltc": 6.0}
    out = run(without, [(0, "ltc.daily_care", ago) for ago in range(1, 89)])
    assert (out.level(), out.rule()) == ("medium", "sources_medium")
    assert not out.grades.in_care.any()


def test_a_benefit_type_may_set_its_own_institution_weights(
    policy: ScoringPolicy, tmp_path: Path
) -> None:
    text = POLICY_PATH.read_text(encoding="utf-8") + "institution = { ltc = 12.0 }\n"
    path = tmp_path / "scoring.toml"
    path.write_text(text, encoding="utf-8")  # appended to [levels.overrides.resident_pension]
    doubled = load_policy(path)
    assert doubled.overrides["resident_pension"].institution == {"ltc": 12.0}
    traces = [(0, "ltc.daily_care", ago) for ago in range(1, 41)]  # weight 10
    assert run(doubled, traces, benefit="resident_pension").rule() == "sources_medium"
    assert run(doubled, traces).rule() == "institution"


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
    n = 500
    traces = random_traces(policy, seed=7, n_persons=n, count=3000)
    out = run(policy, traces, n_persons=n, degraded=("card_txn",))
    score, level = out.grades.score, out.grades.level
    assert ((score >= 0) & (score <= 1)).all()
    strong, medium, weak = (level == LEVELS.index(x) for x in ("strong", "medium", "weak"))
    assert (score[strong] >= 2 / 3 - 1e-6).all()
    assert ((score[medium] >= 1 / 3 - 1e-6) & (score[medium] <= 2 / 3 + 1e-6)).all()
    assert (score[weak] < 1 / 3).all()
    assert strong.any() and medium.any() and weak.any()


def test_degraded_source_silence_lowers_nobody(policy: ScoringPolicy) -> None:
    # Changed on purpose (issue 20): the credit used to raise person 0 from medium to strong
    # whatever their previous level; it now only keeps a previous level, and never certifies.
    # Person 0 paid by PIN every month until the card feed collapsed 60 days ago.
    traces = [(0, "card_txn.pos_pin", ago) for ago in range(95, 360, 30)]
    traces += [(0, "medical.outpatient", 20)]
    # Person 1 never used the card: an outage says nothing about them.
    traces += [(1, "medical.outpatient", 20)]
    healthy = run(policy, traces, n_persons=2)
    outage = run(policy, traces, n_persons=2, degraded=("card_txn",), previous={0: "strong"})
    assert healthy.level(0) == "medium"
    assert (outage.level(0), outage.rule(0)) == ("strong", "sources_strong")
    assert outage.grades.held[0] and not outage.grades.certifiable[0]
    card = policy.sources.index("card_txn")
    assert outage.grades.credited[0, card] and outage.grades.agreeing[0, card]
    assert outage.level(1) == healthy.level(1) == "medium"
    assert not outage.grades.credited[1].any() and not outage.grades.held[1]


def test_a_degraded_source_raises_nobody(policy: ScoringPolicy) -> None:
    # Medium before the outage (card payments only), and transit taps from months ago: counting
    # the degraded transit as agreeing would make them strong, and certify them.
    traces = [(p, "card_txn.pos_pin", ago) for p in (0, 1) for ago in range(5, 80, 10)]
    traces += [(p, "transit.tap_face", ago) for p in (0, 1) for ago in range(150, 300, 20)]
    out = run(policy, traces, n_persons=2, degraded=("transit",), previous={0: "medium"})
    for person in (0, 1):  # medium before; no previous level at all
        assert (out.level(person), out.rule(person)) == ("medium", "sources_medium")
        assert not out.grades.held[person] and not out.grades.credited[person].any()
        assert not out.grades.certifiable[person]


def test_a_level_is_kept_no_higher_than_the_credit_supports(policy: ScoringPolicy) -> None:
    # Strong before; now one card payment months ago, and only that feed to credit: medium.
    traces = [(0, "card_txn.pos_pin", 150)]
    out = run(policy, traces, degraded=("card_txn",), previous={0: "strong"})
    assert (out.level(), out.rule()) == ("medium", "sources_medium")
    assert out.grades.held[0] and not out.grades.certifiable[0]
    without = run(policy, traces, previous={0: "strong"})
    assert without.level() == "weak"


def test_the_dead_without_a_record_are_kept_not_certified(policy: ScoringPolicy) -> None:
    # Died in March without a record: taps and card payments until then, nothing since.
    traces = [(0, s, ago) for s in ("transit.tap_face", "card_txn.pos_pin") for ago in (250, 260)]
    degraded = ("transit", "card_txn", "medical")
    first = run(policy, traces, degraded=degraded)  # no previous level: by the data alone
    assert (first.level(), first.rule()) == ("medium", "long_window")
    kept = run(policy, traces, degraded=degraded, previous={0: "strong"})
    assert kept.level() == "strong" and not kept.grades.certifiable[0]
    assert run(policy, traces, degraded=degraded, previous={0: "medium"}).level() == "medium"


def test_a_face_pass_is_certifiable_while_a_source_is_degraded(policy: ScoringPolicy) -> None:
    traces = [(0, "face.pass_app", 10), (0, "card_txn.pos_pin", 200)]
    traces += [(1, "transit.tap_face", 5), (1, "medical.outpatient", 8), (1, "card_txn.atm", 150)]
    out = run(
        policy, traces, n_persons=2, degraded=("card_txn",),
        previous={0: "strong", 1: "strong"},
    )  # fmt: skip
    assert (out.level(0), out.rule(0)) == ("strong", "face_pass") and out.grades.certifiable[0]
    # Strong by data alone: the degraded card feed is not needed, nor credited.
    assert out.level(1) == "strong" and out.grades.certifiable[1]
    assert not out.grades.held.any() and not out.grades.credited.any()


def test_a_previous_deceased_is_no_level_to_keep(policy: ScoringPolicy) -> None:
    traces = [(0, "card_txn.pos_pin", 150)]
    out = run(policy, traces, degraded=("card_txn",), previous={0: "deceased"})
    assert out.level() == "weak" and not out.grades.held[0]


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
            previous_level=np.array([NO_LEVEL, NO_LEVEL], dtype=np.int8),
            policy=policy,
        )
    with pytest.raises(ValueError, match="previous_level"):
        grade(
            features=out.features,
            benefit_type=np.array(["x", "y"], dtype=object),
            death_day=np.array([-1, -1], dtype=np.int32),
            degraded=np.zeros(len(policy.sources), dtype=bool),
            previous_level=np.array([NO_LEVEL], dtype=np.int8),
            policy=policy,
        )


RANK = {"weak": 0, "medium": 1, "strong": 2}
BENEFITS = ("enterprise_pension", "resident_pension")


@st.composite
def cases(draw: st.DrawFn, policy: ScoringPolicy) -> dict:  # type: ignore[type-arg]
    """Draw persons' traces (recent, older, or outside the long window), a death or two, the
    degraded sources and previous levels."""
    n = draw(st.integers(1, 8))
    ago = st.one_of(st.integers(0, 89), st.integers(90, 364), st.integers(365, 400))
    traces = []
    for person in range(n):
        for source in policy.sources:
            kinds = [f"{s}.{k}" for s, k in policy.kinds if s == source]
            drawn = draw(st.lists(st.tuples(st.sampled_from(kinds), ago), max_size=3))
            traces += [(person, kind, days) for kind, days in drawn]
    return {
        "n_persons": n,
        "traces": traces,
        "benefit": draw(st.sampled_from(BENEFITS)),
        "death": draw(st.dictionaries(st.integers(0, n - 1), st.integers(0, 300), max_size=1)),
        "degraded": tuple(s for s in policy.sources if draw(st.booleans())),
        "previous": draw(
            st.dictionaries(st.integers(0, n - 1), st.sampled_from(LEVELS), max_size=n)
        ),
    }


def check_credit(policy: ScoringPolicy, case: dict) -> Grades:  # type: ignore[type-arg]
    """Assert that credit only keeps levels, never raises or certifies; return the grades."""
    n = case["n_persons"]
    grades = run(policy, **case).grades
    bare = run(policy, **{**case, "degraded": ()}).grades  # the level without any credit
    # Without degraded sources the previous level changes nothing.
    assert np.array_equal(
        bare.level, run(policy, **{**case, "degraded": (), "previous": {}}).grades.level
    )
    unbounded = run(policy, **{**case, "previous": dict.fromkeys(range(n), "strong")}).grades
    rank = np.array([2, 1, 0, -1])  # by index into LEVELS; deceased is no level
    before = np.full(n, -1)
    for p, level in case["previous"].items():
        before[p] = rank[LEVELS.index(level)]
    now, without = rank[grades.level], rank[bare.level]
    dead = bare.level == LEVELS.index("deceased")
    assert (grades.level[dead] == bare.level[dead]).all()
    assert (without <= now).all()
    assert (now <= np.maximum(without, before)).all()
    assert (now <= rank[unbounded.level]).all()  # no higher than the credit itself supports
    assert np.array_equal(grades.level[before < 0], bare.level[before < 0])
    assert np.array_equal(grades.held, now != without)
    assert np.array_equal(grades.credited.any(axis=1), grades.held)
    strong = LEVELS.index("strong")
    assert np.array_equal(grades.certifiable, bare.level == strong)
    assert (grades.level[grades.certifiable] == strong).all()
    degraded = np.array([s in case["degraded"] for s in policy.sources])
    assert not grades.credited[:, ~degraded].any()
    assert not (grades.credited & (grades.recent_weight >= 1.0)).any()
    # Scores stay in their level's band.
    score, level = grades.score, grades.level
    assert (score[level == strong] >= 2 / 3 - 1e-6).all()
    medium = score[level == LEVELS.index("medium")]
    assert ((medium >= 1 / 3 - 1e-6) & (medium <= 2 / 3 + 1e-6)).all()
    assert (score[level == LEVELS.index("weak")] < 1 / 3).all()
    return grades


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_credit_keeps_a_level_and_never_raises_or_certifies(
    policy: ScoringPolicy, data: st.DataObject
) -> None:
    check_credit(policy, data.draw(cases(policy)))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    degraded=st.sets(
        st.sampled_from(("transit", "card_txn", "medical", "face", "ltc")), min_size=1
    ),
    recent_share=st.floats(0.0, 1.0),
)
def test_credit_properties_over_a_crowd(
    policy: ScoringPolicy, seed: int, degraded: set[str], recent_share: float
) -> None:
    # Hypothesis picks the crowd; numpy draws it: hundreds of persons, many of them kept.
    rng = np.random.default_rng(seed)
    n = 300
    kinds = [f"{s}.{k}" for s, k in policy.kinds]
    size = 2_000
    ago = np.where(
        rng.random(size) < recent_share, rng.integers(0, 90, size), rng.integers(90, 400, size)
    )
    traces = [
        (int(p), kinds[int(k)], int(a))
        for p, k, a in zip(
            rng.integers(0, n, size), rng.integers(0, len(kinds), size), ago, strict=True
        )
    ]
    previous = {p: LEVELS[int(x)] for p, x in enumerate(rng.integers(0, 5, n)) if x < 4}
    case = {
        "n_persons": n, "traces": traces, "death": {0: 30}, "degraded": tuple(sorted(degraded)),
        "previous": previous,
    }  # fmt: skip
    check_credit(policy, case)
