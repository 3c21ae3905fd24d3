"""Labels, the held-out split and the configuration, on tiny hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from liveness.errors import ConfigurationError
from liveness.estimator import held_out, label_persons, load_estimator_config, rank_reviews
from liveness.estimator.config import parse_estimator_config
from tests.liveness.conftest import REPO

AS_OF = 1000
END = AS_OF + 90


def test_labels_on_a_hand_made_case() -> None:
    # 0 alive with a face pass; 1 dies within the horizon; 2 already known dead at as_of;
    # 3 dies after the horizon; 4 died before as_of, recorded only later; 5 passes a face
    # check after their recorded death; 6 nothing at all.
    known = np.array([-1, -1, AS_OF - 5, -1, -1, -1, -1], dtype=np.int32)
    death = np.array(
        [-1, AS_OF + 10, AS_OF - 5, END + 1, AS_OF - 20, AS_OF + 5, -1], dtype=np.int32
    )
    face = np.array([AS_OF + 3, -1, -1, -1, -1, AS_OF + 30, -1], dtype=np.int32)
    included, alive, confirmed = label_persons(
        horizon_end_day=END, known_death_day=known, death_day=death, face_pass_day=face
    )
    assert included.tolist() == [True, True, False, True, True, False, True]
    assert alive[included].tolist() == [1, 0, 1, 0, 1]
    assert confirmed[included].tolist() == [True, True, False, True, False]


def test_held_out_is_stratified_and_stable() -> None:
    refs = np.array([f"P{i:07d}" for i in range(1000)], dtype=object)
    alive = np.ones(1000, dtype=np.int8)
    alive[::50] = 0
    test = held_out(person_ref=refs, alive=alive, share=0.3, salt="s")
    assert int(test[alive == 0].sum()) == 6 and int(test[alive == 1].sum()) == 294
    # The same persons are held out whatever the order of the roll.
    order = np.random.default_rng(1).permutation(1000)
    again = held_out(person_ref=refs[order], alive=alive[order], share=0.3, salt="s")
    assert set(refs[order][again]) == set(refs[test])
    assert set(refs[held_out(person_ref=refs, alive=alive, share=0.3, salt="t")]) != set(refs[test])


def test_rank_reviews_puts_the_costliest_doubt_first() -> None:
    ranked = rank_reviews(
        person_id=np.array([1, 2, 3]),
        p_alive=np.array([0.99, 0.5, 0.9]),
        monthly_amount=np.array([1000.0, 100.0, 3000.0]),
    )
    assert ranked.set_index("person_id")["rank"].to_dict() == {3: 1, 2: 2, 1: 3}
    assert ranked["priority"].between(0, 3000).all()


def test_the_shipped_configuration_loads_and_bad_ones_are_named() -> None:
    config = load_estimator_config(REPO / "config" / "estimator.toml")
    assert 0 < config.threshold_weak <= config.threshold_strong <= 1
    assert len(config.version) == 12
    text = (REPO / "config" / "estimator.toml").read_text()
    with pytest.raises(ConfigurationError, match="test_share"):
        parse_estimator_config(text.replace("test_share = 0.3", "test_share = 1.5").encode())
    with pytest.raises(ConfigurationError, match="max_iter"):
        parse_estimator_config(text.replace("max_iter = 200", "max_iter = true").encode())
