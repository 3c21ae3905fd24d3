"""Linking stored keys against the roll and the cards as they are now (relinks, explanations)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session

from connectors.identity import normalise_arrow
from connectors.spec import SOURCES
from liveness.identity import (
    CardIndex,
    RollIndex,
    link_by_card,
    link_by_id_number,
    link_by_name_and_birth_date,
)
from liveness.ingest.traces import LINK_OF_MODE, split_name_keys

# How each built-in trace source links; a deployment's sources come from its configuration.
BUILTIN_LINKS: Mapping[str, tuple[str, ...]] = {
    name: spec.trace.link for name, spec in SOURCES.items() if spec.trace is not None
}
# Trace sources whose rows carry a card number (the others carry an identity number).
CARD_LINKED = tuple(name for name, modes in BUILTIN_LINKS.items() if modes == ("card_no",))
# A stored key of the name-and-birth-date mode ends in its birth date: "name|YYYY-MM-DD".
_NAME_KEY = r"\|\d{4}-\d{2}-\d{2}$"


class LinkIndexes:
    """The roll and card indexes as they are now, each loaded only if needed.

    `links` gives each trace source's link modes (connectors.TraceSpec.link); the built-in
    sources' by default.
    """

    def __init__(
        self, session: Session, *, links: Mapping[str, tuple[str, ...]] | None = None
    ) -> None:
        self.session = session
        self.links = dict(BUILTIN_LINKS if links is None else links)
        self._roll: RollIndex | None = None
        self._cards: CardIndex | None = None

    @property
    def roll(self) -> RollIndex:
        """Return the roll index."""
        if self._roll is None:
            self._roll = RollIndex.load(self.session)
        return self._roll

    @property
    def cards(self) -> CardIndex:
        """Return the card index."""
        if self._cards is None:
            self._cards = CardIndex.load(self.session)
        return self._cards

    def modes(self, source: str) -> tuple[str, ...]:
        """Return a trace source's link modes (an unknown source: by identity number)."""
        return self.links.get(source, ("id_number",))


def key_modes(keys: pa.Array, modes: tuple[str, ...]) -> np.ndarray:
    """Return the mode each stored key is of, as an index into `modes`.

    A row is keyed by the first mode whose columns it filled; only the name-and-birth-date
    fallback can follow another, and its keys are told by their form.
    """
    which = np.zeros(len(keys), dtype=np.int8)
    if len(modes) > 1:
        named = pc.match_substring_regex(keys.cast(pa.string()), _NAME_KEY)
        which[pc.fill_null(named, False).to_numpy(zero_copy_only=False)] = len(modes) - 1
    return which


def link_rows(
    source: str, keys: pa.Array, days: np.ndarray, indexes: LinkIndexes
) -> tuple[np.ndarray, np.ndarray]:
    """Return the person each row links to now (-1: nobody) and its link code (`LINKS`)."""
    modes = indexes.modes(source)
    which = key_modes(keys, modes)
    person_id = np.full(len(keys), -1, dtype=np.int32)
    link = np.zeros(len(keys), dtype=np.int8)
    for code, mode in enumerate(modes):
        rows = np.flatnonzero(which == code)
        if rows.size == 0:
            continue
        picked = keys if rows.size == len(keys) else keys.take(pa.array(rows))
        found = _link_now(mode, picked, days[rows], indexes)
        person_id[rows] = found
        link[rows] = np.where(found >= 0, LINK_OF_MODE[mode], 0)
    return person_id, link


def _link_now(mode: str, keys: pa.Array, days: np.ndarray, indexes: LinkIndexes) -> np.ndarray:
    """Link stored keys of one mode against today's roll or cards."""
    if mode == "card_no":
        return link_by_card(keys, days, indexes.cards)
    if mode == "name_birth_date":
        names, births = split_name_keys(keys)
        return link_by_name_and_birth_date(names, births, indexes.roll)
    numbers, statuses = judged_numbers(keys)
    return link_by_id_number(numbers, statuses, indexes.roll)


def judged_numbers(keys: pa.Array) -> tuple[pd.Series, pd.Series]:
    """Return stored identity numbers with their status, judged again from the number alone."""
    _, statuses = normalise_arrow(keys)
    return (
        pd.Series(keys.to_pandas(), dtype=pd.StringDtype("pyarrow")),
        pd.Series(statuses.to_pandas(), dtype=pd.StringDtype("pyarrow")),
    )
