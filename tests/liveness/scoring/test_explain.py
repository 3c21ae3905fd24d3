import json
from pathlib import Path

import pytest

from liveness.scoring import ScoringPolicy, load_policy, reasons_for, reasons_frame, render_reasons
from tests.liveness.scoring.test_grade import AS_OF, Outcome, random_traces, run

POLICY_PATH = Path(__file__).parents[3] / "config" / "scoring.toml"


@pytest.fixture(scope="module")
def policy() -> ScoringPolicy:
    return load_policy(POLICY_PATH)


@pytest.fixture(scope="module")
def outcome(policy: ScoringPolicy) -> Outcome:
    traces = [
        (0, "transit.tap_face", 3),  # 2025-12-28
        (0, "medical.outpatient", 11),  # 2025-12-20
        (1, "medical.pharmacy", 40),
        (1, "medical.outpatient", 41),
        (2, "face.pass_app", 30),  # 2025-12-01
        (3, "medical.outpatient", 20),
        (3, "card_txn.pos_pin", 100),  # 2025-09-22, before the card feed collapsed
        (4, "card_txn.pos_pin", 5),  # after the death on 2025-11-21
        (4, "transit.tap", 2),
        (6, "transit.tap", 200),
    ]
    # Person 3 was strong at the previous run: the card feed's outage keeps them there.
    return run(
        policy, traces, n_persons=7, death={4: 40}, degraded=("card_txn",),
        previous={3: "strong"},
    )  # fmt: skip


def frame(policy: ScoringPolicy, outcome: Outcome) -> list[dict]:
    return reasons_frame(
        grades=outcome.grades,
        features=outcome.features,
        as_of_day=AS_OF,
        policy=policy,
        post_death=outcome.post_death,
    )


def test_reasons_frame_holds_the_facts(policy: ScoringPolicy, outcome: Outcome) -> None:
    reasons = frame(policy, outcome)
    assert len(reasons) == 7
    json.dumps(reasons)  # JSON-able as stored
    first = reasons[0]
    assert first["level"] == "strong" and first["rule"] == "sources_strong"
    assert first["policy"] == policy.version and first["window"] == 90
    assert first["sources"] == {
        "transit": {"last": "2025-12-28", "recent_weight": 1.0, "agrees": True},
        "medical": {"last": "2025-12-20", "recent_weight": 1.0, "agrees": True},
    }
    assert "degraded" not in first and "death" not in first
    assert reasons[2]["face_pass"] == "2025-12-01"
    assert reasons[3]["degraded"] == ["card_txn"]
    assert reasons[3]["sources"]["card_txn"]["degraded"] is True
    assert reasons[3]["kept_from"] == "strong"
    assert "kept_from" not in first
    assert reasons[4]["death"] == "2025-11-21" and reasons[4]["post_death_traces"] == 2
    assert reasons[5]["sources"] == {} and reasons[5]["rule"] == "no_evidence"


def test_reasons_for_matches_the_frame(policy: ScoringPolicy, outcome: Outcome) -> None:
    reasons = frame(policy, outcome)
    for i in range(7):
        one = reasons_for(
            grades=outcome.grades,
            features=outcome.features,
            index=i,
            as_of_day=AS_OF,
            policy=policy,
            post_death=outcome.post_death,
        )
        assert one == reasons[i]


def test_render_strong_in_both_languages(policy: ScoringPolicy, outcome: Outcome) -> None:
    reasons = frame(policy, outcome)[0]
    assert render_reasons(reasons, lang="zh") == (
        "强：近90天有2个独立来源（公交刷卡：最近2025-12-28，医保结算：最近2025-12-20）"
    )
    assert render_reasons(reasons, lang="en") == (
        "strong: 2 independent sources in the last 90 days "
        "(transit: last 2025-12-28; medical: last 2025-12-20)"
    )


def test_render_every_rule(policy: ScoringPolicy, outcome: Outcome) -> None:
    reasons = frame(policy, outcome)
    zh = [render_reasons(r, lang="zh") for r in reasons]
    en = [render_reasons(r, lang="en") for r in reasons]
    assert zh[1].startswith("中：近90天有1个来源（医保结算：最近")
    assert "2025-12-01" in zh[2] and "刷脸" in zh[2]
    assert "face verification passed" in en[2]
    assert "市民卡交易数据中断" in zh[3] and "2025-09-22" in zh[3]
    assert "card payments: last 2025-09-22 (source degraded)" in en[3]
    assert zh[3].endswith("；市民卡交易数据中断期间，保持上次等级，暂不以数据比对认证")
    assert en[3].endswith(
        "; kept at its previous level while card payments was degraded: "
        "not certified by data until it recovers"
    )
    assert zh[4].startswith("已故：死亡日期2025-11-21") and "2条" in zh[4]
    assert "2 traces after death" in en[4]
    assert zh[5] == "弱：近365天无足够活动痕迹"
    assert "transit: last" in en[6] and en[6].startswith("weak")


def test_bulk_reasons_scale(policy: ScoringPolicy) -> None:
    n = 20_000
    traces = random_traces(policy, seed=3, n_persons=n, count=60_000)
    out = run(policy, traces, n_persons=n, degraded=("transit",))
    reasons = frame(policy, out)
    assert [r["level"] for r in reasons[:50]] == [
        ("strong", "medium", "weak", "deceased")[x] for x in out.grades.level[:50]
    ]
    for r in reasons[:200]:
        assert render_reasons(r, lang="zh") and render_reasons(r, lang="en")


def test_render_a_level_kept_below_the_previous_one(policy: ScoringPolicy) -> None:
    # Strong before; the transit and card feeds' outage supports no more than medium.
    traces = [(0, "transit.tap_face", 150)]
    out = run(policy, traces, degraded=("transit", "card_txn"), previous={0: "strong"})
    (reasons,) = frame(policy, out)
    assert (reasons["level"], reasons["kept_from"], reasons["degraded"]) == (
        "medium", "strong", ["transit"],
    )  # fmt: skip
    assert render_reasons(reasons, lang="zh").endswith(
        "；公交刷卡数据中断期间，按中断前记录保持为中（上次为强）"
    )
    assert render_reasons(reasons, lang="en").endswith(
        "; kept at medium while transit was degraded (previous level strong)"
    )
    medium = run(policy, traces, degraded=("transit",), previous={0: "medium"})
    (kept,) = frame(policy, medium)
    assert render_reasons(kept, lang="en").endswith(
        "; kept at its previous level while transit was degraded"
    )


def test_render_reasons_stored_before_levels_were_kept(policy: ScoringPolicy) -> None:
    stored = {
        "policy": "x", "level": "strong", "rule": "sources_strong", "score": 0.9, "window": 90,
        "long": 365, "degraded": ["card_txn"],
        "sources": {
            "card_txn": {"last": "2025-09-22", "recent_weight": 0, "agrees": True, "degraded": True},
            "medical": {"last": "2025-12-11", "recent_weight": 1, "agrees": True},
        },
    }  # fmt: skip
    assert render_reasons(stored, lang="en").endswith(
        "; card payments source degraded: counted from records before the outage"
    )
    assert render_reasons(stored, lang="zh").endswith("；市民卡交易数据中断，按中断前记录计入")


def test_an_institutions_records_explain_themselves(policy: ScoringPolicy) -> None:
    traces = [(0, "ltc.daily_care", ago) for ago in range(2, 90)]  # last on 2025-12-29
    traces += [(0, "transit.tap", 10), (0, "medical.outpatient", 12)]  # listed as no cause
    (reasons,) = frame(policy, run(policy, traces))
    assert reasons["level"] == "strong" and reasons["rule"] == "institution"
    assert reasons["institution"] == ["ltc"]
    assert reasons["sources"]["ltc"] == {
        "last": "2025-12-29", "recent_weight": 22.0, "agrees": True, "group": "medical"
    }  # fmt: skip
    assert render_reasons(reasons, lang="zh") == (
        "强：养老/护理机构近90天的在护记录（长期护理服务：最近2025-12-29）"
    )
    assert render_reasons(reasons, lang="en") == (
        "strong: in the care of an institution, its records in the last 90 days "
        "(long-term care: last 2025-12-29)"
    )
    # Only that rule names the institution's sources.
    (other,) = frame(policy, run(policy, [(0, "ltc.home_visit", 5)]))
    assert other["rule"] == "sources_medium" and "institution" not in other
