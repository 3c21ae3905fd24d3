"""Benefit types read as codes in Arrow grade as the names do, in every form a roll holds them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.scoring import BENEFIT_TYPES, benefit_rule_codes, benefit_type_codes, load_policy

POLICY = load_policy(Path(__file__).parents[3] / "config" / "scoring.toml")

# The roll's own types, a type no rule names, and what a damaged roll could hold.
VALUES = st.one_of(st.sampled_from(BENEFIT_TYPES), st.text(max_size=12), st.none())


@settings(max_examples=200, deadline=None)
@given(values=st.lists(VALUES, max_size=40))
def test_codes_pick_the_rules_the_names_pick(values: list[str | None]) -> None:
    names = np.array(values, dtype=object)
    expected = np.array(
        [BENEFIT_TYPES.index(v) if v in BENEFIT_TYPES else -1 for v in values], dtype=np.int32
    )
    rules = benefit_rule_codes(benefit_type=names, policy=POLICY)
    forms = [
        names,
        pd.Series(names, dtype=object),
        pd.Series(names, dtype="string[pyarrow]"),
        pd.Series(names, dtype=pd.ArrowDtype(pa.string())),
        pd.Series(names, dtype="category"),
    ]
    for form in forms:
        codes = benefit_type_codes(form)
        assert codes.dtype == np.int32 and codes.tolist() == expected.tolist()
        assert benefit_rule_codes(benefit_type=codes, policy=POLICY).tolist() == rules.tolist()
