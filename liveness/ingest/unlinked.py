"""Why stored traces match nobody on today's roll and cards, by key (`liveness unmatched`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from liveness.identity import link_by_name_and_birth_date
from liveness.identity.linking import USABLE_ID_STATUSES
from liveness.ingest.link_now import LinkIndexes, judged_numbers, key_modes
from liveness.ingest.traces import split_name_keys

# Why a trace matched nobody, by code (see `explain_unlinked`).
_NO_CARD, _NO_HOLDER, _NOT_YET_ISSUED, _CANCELLED, _INVALID_NUMBER, _SHARED_NUMBER = range(6)
_NOT_ON_ROLL, _WOULD_LINK, _NO_NAMESAKE = 6, 7, 8
_REASONS = {
    _NO_NAMESAKE: "nobody, or several persons, on the roll with this name and birth date",
    _NO_CARD: "no card with this number",
    _NO_HOLDER: "card holder not on the roll",
    _INVALID_NUMBER: "invalid identity number",
    _SHARED_NUMBER: "identity number held by several persons on the roll",
    _NOT_ON_ROLL: "identity number not on the roll",
    _WOULD_LINK: "links now: run `liveness relink`",
}


def explain_unlinked(
    source: str, keys: pa.Array, days: np.ndarray, *, indexes: LinkIndexes
) -> pd.DataFrame:
    """Group unlinked traces by key and the reason they match nobody on today's roll and cards.

    Returns link_key, reason, rows, first_day and last_day (store day numbers).
    """
    code = np.full(len(keys), _WOULD_LINK, dtype=np.int8)
    date = np.full(len(keys), np.iinfo(np.int32).min, dtype=np.int64)
    modes = indexes.modes(source)
    which = key_modes(keys, modes)
    for index, mode in enumerate(modes):
        rows = np.flatnonzero(which == index)
        if rows.size:
            picked = keys if rows.size == len(keys) else keys.take(pa.array(rows))
            code[rows], date[rows] = _why(mode, picked, days[rows], indexes)
    frame = pd.DataFrame(
        {
            "link_key": pd.Series(keys.to_pandas(), dtype=object),
            "code": code,
            "date": date,
            "day": days,
        }
    )
    grouped = (
        frame.groupby(["link_key", "code", "date"], dropna=False, sort=False)["day"]
        .agg(rows="size", first_day="min", last_day="max")
        .reset_index()
    )
    reason = grouped["code"].map(_REASONS).astype(object)
    dated = grouped["code"].isin([_NOT_YET_ISSUED, _CANCELLED])
    if dated.any():
        label = grouped.loc[dated, "code"].map({_NOT_YET_ISSUED: "issued", _CANCELLED: "cancelled"})
        when = pd.to_datetime(grouped.loc[dated, "date"], unit="D").dt.strftime("%Y-%m-%d")
        reason[dated] = "card not valid on that day (" + label + " " + when + ")"
    grouped["reason"] = reason
    return grouped[["link_key", "reason", "rows", "first_day", "last_day"]]


def _why(
    mode: str, keys: pa.Array, days: np.ndarray, indexes: LinkIndexes
) -> tuple[np.ndarray, np.ndarray]:
    """Return the reason code (and the card date it cites) of keys of one link mode."""
    code = np.full(len(keys), _WOULD_LINK, dtype=np.int8)
    date = np.full(len(keys), np.iinfo(np.int32).min, dtype=np.int64)
    if mode == "card_no":
        code[:] = _NO_CARD
        cards = indexes.cards
        rows, slots = cards.by_card_no.matches(keys)
        issued, cancelled, holders = cards.validity
        on_day = days[rows]
        early, late = on_day < issued[slots], on_day >= cancelled[slots]
        code[rows] = np.select(
            [holders[slots] < 0, early, late],
            [_NO_HOLDER, _NOT_YET_ISSUED, _CANCELLED],
            _WOULD_LINK,
        )
        date[rows] = np.where(early, issued[slots], np.where(late, cancelled[slots], date[rows]))
        return code, date
    if mode == "name_birth_date":
        names, births = split_name_keys(keys)
        found = link_by_name_and_birth_date(names, births, indexes.roll) >= 0
        return np.where(found, _WOULD_LINK, _NO_NAMESAKE).astype(np.int8), date
    numbers, statuses = judged_numbers(keys)
    usable = statuses.isin(USABLE_ID_STATUSES).to_numpy(dtype=bool)
    roll = indexes.roll
    persons = roll.persons
    shared_numbers = persons.loc[
        persons["id_status"].isin(USABLE_ID_STATUSES) & persons["id_number"].duplicated(keep=False),
        "id_number",
    ]
    shared = numbers.isin(set(shared_numbers)).to_numpy(dtype=bool)
    on_roll = roll.number_index.positions(numbers) >= 0
    code = np.select(
        [~usable, shared, ~on_roll], [_INVALID_NUMBER, _SHARED_NUMBER, _NOT_ON_ROLL],
        _WOULD_LINK,
    ).astype(np.int8)  # fmt: skip
    return code, date
