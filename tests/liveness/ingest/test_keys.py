"""Card and identity number lookups are exact: the same answers as a plain dictionary."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from liveness.identity.keys import KeyIndex, string_hashes

# Short and long keys, look-alikes ("a" / "a "), non-ASCII, and keys past the padded width.
KEY = st.one_of(
    st.text(alphabet="0123456789CX ", max_size=20),
    st.text(max_size=8),
    st.text(alphabet="ab", min_size=60, max_size=80),
)


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(KEY, unique=True, max_size=40), probes=st.lists(st.one_of(KEY, st.none())))
def test_positions_match_a_dictionary(keys: list[str], probes: list[str | None]) -> None:
    index = KeyIndex.build(pa.array(keys, pa.string()))
    where = {key: position for position, key in enumerate(keys)}
    values = [*probes, *keys]
    found = index.positions(pa.array(values, pa.string()))
    assert found.tolist() == [where.get(v, -1) if v is not None else -1 for v in values]


def test_a_string_hashes_alike_whatever_its_neighbours() -> None:
    alone = string_hashes(pa.array(["8860100000012345"], pa.large_string()))
    among_longer = string_hashes(
        pa.array(["x" * 70, "8860100000012345", "y" * 30], pa.large_string())
    )
    assert alone[0] == among_longer[1]


def test_colliding_hashes_still_find_their_own_key(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    import liveness.identity.keys as keys_module

    # Every string hashes alike: only the exact comparison tells the keys apart.
    monkeypatch.setattr(
        keys_module, "_hash_padded", lambda padded, values: np.zeros(len(values), np.uint64)
    )
    index = KeyIndex.build(pa.array(["C1", "C2", "C3"]))
    assert index.positions(pa.array(["C3", "C9", "C1", None, "C2"])).tolist() == [2, -1, 0, -1, 1]


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(KEY, unique=True, max_size=40), probes=st.lists(st.one_of(KEY, st.none())))
def test_positions_are_exact_when_every_hash_collides(
    keys: list[str], probes: list[str | None]
) -> None:
    import numpy as np
    from pytest import MonkeyPatch

    import liveness.identity.keys as keys_module

    # Hashes that only tell lengths apart (for short ones): the comparison of the padded words,
    # and of long strings as strings, must tell every look-alike apart.
    def colliding(padded: keys_module._Padded, values: pa.Array) -> np.ndarray:
        return np.minimum(padded.lengths, np.uint64(3))

    with MonkeyPatch.context() as patch:
        patch.setattr(keys_module, "_hash_padded", colliding)
        index = KeyIndex.build(pa.array(keys, pa.string()))
        values = [*probes, *keys]
        found = index.positions(pa.array(values, pa.string()))
    where = {key: position for position, key in enumerate(keys)}
    assert found.tolist() == [where.get(v, -1) if v is not None else -1 for v in values]
