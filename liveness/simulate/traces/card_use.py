"""Traces of card use: transit taps and citizen-card transactions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from liveness.simulate.cards import Cards
from liveness.simulate.population import NEVER, Population
from liveness.simulate.traces.draws import (
    BoolArray,
    IntArray,
    Trace,
    _categorical,
    _clock,
    _epoch_day,
    _ids,
    _order,
    _pick,
    _poisson_days,
    _timestamps,
    money_text,
)

# Events per person-year by profile (order of Profile), before the personal activity factor.
_TRANSIT_RATE = np.array([110.0, 30.0, 0.0, 0.0, 0.0, 0.0])
_PURCHASE_RATE = np.array([26.0, 12.0, 7.0, 0.0, 3.0, 3.0])
# Share of a profile's taps at gates that match the face: true, false.
_FACE_MATCH = np.array([[0.40, 0.03], [0.25, 0.03], [0, 0], [0, 0], [0, 0], [0.2, 0.03]])
# Relatives tap a dead person's senior card at this yearly rate.
_RELATIVE_TAP_RATE = 80.0
_RELATIVE_SHARE = 0.10

CHANNELS = np.array(["pos_pin", "pos_tap", "counter", "atm", "online", "auto_debit"])
_CHANNEL_P = np.array(
    [
        [0.25, 0.40, 0.10, 0.05, 0.20],
        [0.30, 0.30, 0.20, 0.05, 0.15],
        [0.10, 0.00, 0.50, 0.40, 0.00],
        [0.20, 0.20, 0.20, 0.20, 0.20],
        [0.00, 0.00, 0.00, 0.20, 0.80],
        [0.30, 0.00, 0.40, 0.00, 0.30],
    ]
)
_POS_MCC = np.array(["5411", "5812", "5912", "5311", "5499"])


def build_transit(
    *, rng: np.random.Generator, population: Population, cards: Cards
) -> tuple[Trace, BoolArray]:
    """Draw transit taps; return them and who had their card used after death."""
    holding = cards.transit
    has_card = holding.before >= 0
    rate = np.where(has_card, _TRANSIT_RATE[population.profile] * population.activity, 0.0)
    zero = np.zeros(population.size, dtype=np.int64)
    person, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    probs = _FACE_MATCH[population.profile[person]]
    u = rng.random(person.size)
    face = np.where(u < probs[:, 0], 0, np.where(u < probs[:, 0] + probs[:, 1], 1, -1))

    # A relative keeps using the senior card of a dead holder, never at a face gate.
    died = population.died
    relative = died & has_card & (rng.random(population.size) < _RELATIVE_SHARE)
    after_rate = np.where(relative, _RELATIVE_TAP_RATE, 0.0)
    p2, d2 = _poisson_days(
        rng,
        rate=after_rate,
        lo=np.minimum(population.death_day + 1, NEVER),
        hi=np.where(relative, population.days, 0),
    )
    used_after_death = np.zeros(population.size, dtype=bool)
    used_after_death[p2] = True
    face2 = np.where(rng.random(p2.size) < 0.15, 1, -1)
    person = np.concatenate([person, p2])
    day = np.concatenate([day, d2])
    face = np.concatenate([face, face2])
    n = person.size

    seconds = _clock(rng, n, peaks=[(0.5, 9.0, 1.5), (0.5, 15.5, 2.0)], hours=(5.5, 21.99))
    order = _order(day, seconds, person)
    person, day, face, seconds = person[order], day[order], face[order], seconds[order]
    card = holding.card_at(person=person, day=day)
    city = np.where(rng.random(n) < 0.8, population.region[person], 330702)
    mode = _categorical(rng, np.tile([0.80, 0.18, 0.02], (n, 1)))
    line = np.where(mode == 0, rng.integers(0, 120, size=n), np.where(mode == 1, 120, 121))
    lines = [f"{k}路" for k in range(1, 121)] + ["金义东线", "婺江渡"]
    stations = [f"ST{k:04d}" for k in range(1, 2001)]
    epoch = _epoch_day(population)
    table = pa.table(
        {
            "record_id": _ids("T", n, 9),
            "card_no": _pick(cards.card_no, card),
            "tapped_at": _timestamps((epoch + day) * 86400 + seconds),
            "city_code": pa.array(city).cast(pa.string()),
            "mode": _pick(["bus", "metro", "ferry"], mode),
            "line": _pick(lines, line),
            "station": _pick(stations, rng.integers(0, len(stations), size=n)),
            "face_match": _pick(["true", "false"], face),
        }
    )
    protected = died[person]
    return Trace(table=table, day=day, person=person, protected=protected), used_after_death


# Long by design: one linear recipe on one random stream; its order fixes the files.
def build_card_txn(*, rng: np.random.Generator, population: Population, cards: Cards) -> Trace:
    """Draw citizen-card transactions, including auto-debits that outlive their holder."""
    holding = cards.citizen
    has_card = holding.before >= 0
    rate = np.where(has_card, _PURCHASE_RATE[population.profile] * population.activity, 0.0)
    zero = np.zeros(population.size, dtype=np.int64)
    person, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    channel = _categorical(rng, _CHANNEL_P[population.profile[person]])
    seconds = _clock(
        rng, person.size, peaks=[(0.6, 10.0, 2.0), (0.4, 17.0, 2.5)], hours=(7.0, 21.5)
    )

    # Standing orders run monthly on a fixed day until the end of the period, death or not.
    holders = np.flatnonzero(has_card)
    debit_dom = rng.integers(1, 29, size=population.size)
    bill = rng.uniform(30, 300, size=population.size)
    start = np.datetime64(population.start, "D")
    first_month = start.astype("datetime64[M]")
    last_month = (start + np.timedelta64(population.days - 1, "D")).astype("datetime64[M]")
    auto_person: list[IntArray] = []
    auto_day: list[IntArray] = []
    month = first_month
    while month <= last_month:
        when = (month.astype("datetime64[D]") - start).astype(np.int64) + debit_dom[holders] - 1
        inside = (when >= 0) & (when < population.days)
        auto_person.append(holders[inside])
        auto_day.append(when[inside])
        month = month + np.timedelta64(1, "M")
    ap = np.concatenate(auto_person)
    ad = np.concatenate(auto_day)
    person = np.concatenate([person, ap])
    day = np.concatenate([day, ad])
    channel = np.concatenate([channel, np.full(ap.size, 5)])
    seconds = np.concatenate([seconds, rng.integers(2 * 3600, 4 * 3600, size=ap.size)])

    order = _order(day, seconds, person)
    person, day, channel, seconds = person[order], day[order], channel[order], seconds[order]
    n = person.size
    card = holding.card_at(person=person, day=day)
    pos_amount = np.exp(rng.normal(np.log(35.0), 0.8, size=n)) * 100
    online_amount = np.exp(rng.normal(np.log(60.0), 0.9, size=n)) * 100
    cents = np.select(
        [channel <= 1, channel == 2, channel == 3, channel == 4],
        [
            pos_amount,
            rng.integers(100, 3001, size=n) * 100.0,
            rng.integers(1, 21, size=n) * 10000.0,
            online_amount,
        ],
        default=bill[person] * np.exp(rng.normal(0.0, 0.2, size=n)) * 100,
    ).astype(np.int64)
    cents = np.maximum(cents, 100)
    mcc = np.select(
        [channel <= 1, channel == 2, channel == 3, channel == 4],
        [rng.integers(0, 5, size=n), 5, 6, 7],
        default=8,
    )
    mcc_vocabulary = [*_POS_MCC.tolist(), "6010", "6011", "5999", "4900"]
    city = np.where(channel == 4, -1, population.region[person])
    epoch = _epoch_day(population)
    table = pa.table(
        {
            "record_id": _ids("C", n, 9),
            "card_no": _pick(cards.card_no, card),
            "txn_at": _timestamps((epoch + day) * 86400 + seconds),
            "channel": _pick(CHANNELS, channel),
            "merchant_category": _pick(mcc_vocabulary, mcc),
            "amount": money_text(cents),
            "city_code": pa.array(city, mask=city < 0).cast(pa.string()),
        }
    )
    protected = population.died[person]
    return Trace(table=table, day=day, person=person, protected=protected)
