"""Traces of community life: elderly canteens, meals delivered at home, community events."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from liveness.simulate.cards import Cards
from liveness.simulate.population import Population
from liveness.simulate.traces.draws import (
    Trace,
    _clock,
    _epoch_day,
    _ids,
    _order,
    _pick,
    _poisson_days,
    _region_index,
    _timestamps,
)

ACTIVITIES = np.array(["canteen_meal", "meal_delivery", "event"])
# Per profile (order of Profile), per activity: the share who take part, and how often a year
# (before the personal activity factor). Canteens and events are for people in town and in
# the suburbs; meals are delivered to those who cannot come.
_TAKES_PART = np.array(
    [
        [0.15, 0.00, 0.30],
        [0.18, 0.02, 0.25],
        [0.05, 0.00, 0.12],
        [0.00, 0.15, 0.00],
        [0.00, 0.00, 0.00],
        [0.05, 0.25, 0.05],
    ]
)
_TIMES = np.array([60.0, 150.0, 6.0])
# Share of rows recorded by the citizen card (where the person holds one); the others are
# signed in by name and birth date (a delivery always is).
_BY_CARD = np.array([0.85, 0.0, 0.30])
_HOURS = [
    [(0.8, 11.5, 0.5), (0.2, 17.5, 0.5)],
    [(0.8, 11.0, 0.5), (0.2, 17.0, 0.5)],
    [(0.6, 9.5, 1.0), (0.4, 14.5, 1.0)],
]


def build_community(*, rng: np.random.Generator, population: Population, cards: Cards) -> Trace:
    """Draw canteen meals, delivered meals and community events of the elderly."""
    n_all = population.size
    zero = np.zeros(n_all, dtype=np.int64)
    persons, days, kinds, seconds = [], [], [], []
    for activity in range(ACTIVITIES.size):
        takes = ~population.silent & (rng.random(n_all) < _TAKES_PART[population.profile, activity])
        rate = np.where(takes, _TIMES[activity] * population.activity, 0.0)
        person, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
        persons.append(person)
        days.append(day)
        kinds.append(np.full(person.size, activity))
        seconds.append(_clock(rng, person.size, peaks=_HOURS[activity], hours=(7.0, 20.0)))
    person, day = np.concatenate(persons), np.concatenate(days)
    kind, second = np.concatenate(kinds), np.concatenate(seconds)
    order = _order(day, second, person)
    person, day, kind, second = person[order], day[order], kind[order], second[order]
    n = person.size
    card = cards.citizen.card_at(person=person, day=day)
    by_card = (card >= 0) & (rng.random(n) < _BY_CARD[kind])
    venue = _region_index(population.region[person]) * 30 + rng.integers(0, 30, size=n)
    epoch = _epoch_day(population)
    table = pa.table(
        {
            "record_id": _ids("CM", n, 9),
            "card_no": _pick(cards.card_no, np.where(by_card, card, -1)),
            "name": pa.array(population.name[person], mask=by_card, type=pa.string()),
            "birth_date": pa.array(
                population.birth_date[person], mask=by_card, type=pa.date32()
            ).cast(pa.string()),
            "served_at": _timestamps((epoch + day) * 86400 + second),
            "activity": _pick(ACTIVITIES, kind),
            "venue_code": _pick([f"E{k:03d}" for k in range(30 * 9)], venue),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])
