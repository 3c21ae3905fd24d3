"""Linking stored keys against the roll and the cards as they are now (relinks, explanations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy.orm import Session

from connectors.identity import normalise_arrow
from liveness.identity import CardIndex, RollIndex, link_by_card, link_by_id_number

# Trace sources whose rows carry a card number (the others carry an identity number).
CARD_LINKED = ("transit", "card_txn")


class LinkIndexes:
    """The roll and card indexes as they are now, each loaded only if needed."""

    def __init__(self, session: Session) -> None:
        self.session = session
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


def link_rows(
    source: str, keys: pa.Array, days: np.ndarray, indexes: LinkIndexes
) -> tuple[np.ndarray, str]:
    """Return the person each row links to now (-1: nobody) and the link's name."""
    if source in CARD_LINKED:
        return link_by_card(keys, days, indexes.cards), "card"
    numbers, statuses = judged_numbers(keys)
    return link_by_id_number(numbers, statuses, indexes.roll), "id_number"


def judged_numbers(keys: pa.Array) -> tuple[pd.Series, pd.Series]:
    """Return stored identity numbers with their status, judged again from the number alone."""
    _, statuses = normalise_arrow(keys)
    return (
        pd.Series(keys.to_pandas(), dtype=pd.StringDtype("pyarrow")),
        pd.Series(statuses.to_pandas(), dtype=pd.StringDtype("pyarrow")),
    )
