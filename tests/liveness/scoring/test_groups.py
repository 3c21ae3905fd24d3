"""Independence groups: sources that record the same acts agree as one source."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from liveness.scoring import PolicyError, ScoringPolicy, load_policy, reasons_frame, render_reasons
from liveness.sources import traces_beside
from tests.liveness.scoring.test_grade import AS_OF, run

POLICY_PATH = Path(__file__).parents[3] / "config" / "scoring.toml"


def grouped(**groups: str) -> dict:
    """Return the shipped trace sources, each in its own group or as `groups` says."""
    return {
        name: dataclasses.replace(spec, group=groups.get(name, name))
        for name, spec in traces_beside(POLICY_PATH).items()
    }


@pytest.fixture(scope="module")
def policy() -> ScoringPolicy:
    # A card payment at the clinic and the clinic's visit record: the same act, twice.
    return load_policy(POLICY_PATH, traces=grouped(card_txn="medical"))


def test_the_groups_of_the_policy(policy: ScoringPolicy) -> None:
    assert policy.groups[:3] == ("transit", "medical", "face")
    assert policy.group_of_source.tolist()[:4] == [0, 1, 1, 2]
    assert policy.group_members["medical"] == ["card_txn", "medical"]
    assert len(policy.groups) == len(policy.sources) - 1
    # Without a group of its own each source is a group of its own.
    alone = load_policy(POLICY_PATH, traces=grouped())
    assert alone.groups == alone.sources
    assert alone.group_of_source.tolist() == list(range(len(alone.sources)))


def test_two_agreeing_sources_of_one_group_give_medium(policy: ScoringPolicy) -> None:
    same = [(0, "card_txn.pos_pin", 5), (0, "medical.outpatient", 6)]
    apart = [(1, "transit.tap_face", 5), (1, "medical.outpatient", 6)]
    three = [(2, "card_txn.pos_pin", 5), (2, "medical.outpatient", 6), (2, "transit.tap_face", 7)]
    out = run(policy, same + apart + three, n_persons=3)
    assert (out.level(0), out.rule(0)) == ("medium", "sources_medium")
    assert (out.level(1), out.rule(1)) == ("strong", "sources_strong")
    assert (out.level(2), out.rule(2)) == ("strong", "sources_strong")
    assert out.features.recent_sources.tolist() == [1, 2, 2]
    # Both sources still agree, each on its own: only their count is by group.
    assert out.grades.agreeing[0].tolist()[:4] == [False, True, True, False]
    # Without the group the same traces are strong.
    alone = run(load_policy(POLICY_PATH, traces=grouped()), same)
    assert alone.level() == "strong"
    # A group's support is its best source's: the score stays in the medium band.
    assert 1 / 3 <= out.grades.score[0] <= 2 / 3


def test_the_reasons_name_the_group_and_count_it_once(policy: ScoringPolicy) -> None:
    out = run(policy, [(0, "card_txn.pos_pin", 5), (0, "medical.outpatient", 6)])
    (reasons,) = reasons_frame(
        grades=out.grades, features=out.features, as_of_day=AS_OF, policy=policy,
        post_death=out.post_death, persons=np.array([0]),
    )  # fmt: skip
    assert reasons["sources"]["card_txn"]["group"] == "medical"
    assert "group" not in reasons["sources"]["medical"]
    text = render_reasons(reasons, lang="en")
    assert text.startswith("medium: 1 source in the last 90 days")
    assert "card payments: last" in text and "(one source with card payments)" in text


def test_strong_sources_may_not_exceed_the_groups(tmp_path: Path) -> None:
    sources = len(grouped())
    text = POLICY_PATH.read_text(encoding="utf-8").replace(
        "strong_sources = 2", f"strong_sources = {sources}"
    )
    path = tmp_path / "scoring.toml"
    path.write_text(text, encoding="utf-8")
    assert load_policy(path, traces=grouped()).default.strong_sources == sources
    with pytest.raises(
        PolicyError, match=rf"levels\.strong_sources \({sources}\) exceeds the {sources - 1}"
    ):
        load_policy(path, traces=grouped(card_txn="medical"))


def test_render_uses_a_declared_sources_label() -> None:
    reasons = {
        "level": "medium", "rule": "sources_medium", "window": 90, "long": 365,
        "sources": {"canteen": {"last": "2025-12-01", "recent_weight": 2.0, "agrees": True}},
    }  # fmt: skip
    assert "老年食堂：最近2025-12-01" in render_reasons(
        reasons, lang="zh", labels={"canteen": "老年食堂"}
    )
    assert "canteen: last 2025-12-01" in render_reasons(reasons, lang="en")
