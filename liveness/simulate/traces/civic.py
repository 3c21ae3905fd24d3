"""Traces of people out and about: real-name rail and air travel, in-person counter services."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from liveness.simulate.population import Population, Profile
from liveness.simulate.traces.draws import (
    Trace,
    _categorical,
    _clock,
    _epoch_day,
    _identified,
    _order,
    _pick,
    _poisson_days,
    _region_index,
    _timestamps,
)

# Per profile (order of Profile): the share who travel by rail or air at all in a year, their
# round trips a year (before the personal activity factor), and the share of flights. Those
# living out of the province travel most (home for the festivals); the bedridden and the
# homebound not at all.
_TRAVELLERS = np.array([0.35, 0.15, 0.05, 0.0, 0.80, 0.0])
_TRIPS = np.array([3.0, 2.0, 1.5, 0.0, 4.0, 0.0])
_FLIGHTS = np.array([0.25, 0.15, 0.05, 0.0, 0.45, 0.0])
_STATIONS = np.array(["金华", "金华南", "义乌", "永康南", "东阳", "杭州东", "上海虹桥", "北京南"])
_AIRPORTS = np.array(["义乌机场", "杭州萧山", "上海浦东", "北京首都", "广州白云", "深圳宝安"])

# Visits a year to a counter (bank, social-insurance hall, government service centre), by
# profile: country people collect their pension at the bank counter; the bedridden send
# relatives (no trace of their own), those far away rarely come.
_COUNTER_RATE = np.array([2.0, 2.5, 4.0, 0.0, 0.3, 0.4])
VENUES = np.array(["bank", "social_insurance", "government"])
_VENUE_P = np.array([[0.55, 0.25, 0.20], [0.75, 0.15, 0.10]])  # rows: town, country


def build_travel(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw real-name rail and air departures: each trip out, and back some days later."""
    profile = population.profile
    travels = ~population.silent & (rng.random(population.size) < _TRAVELLERS[profile])
    rate = np.where(travels, _TRIPS[profile] * population.activity, 0.0)
    zero = np.zeros(population.size, dtype=np.int64)
    out, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    back = day + rng.integers(2, 21, size=out.size)
    returns = back < population.activity_end[out]
    person = np.concatenate([out, out[returns]])
    day = np.concatenate([day, back[returns]])
    seconds = _clock(rng, person.size, peaks=[(0.5, 9.0, 2.0), (0.5, 15.5, 2.5)], hours=(6.0, 22.5))
    order = _order(day, seconds, person)
    person, day, seconds = person[order], day[order], seconds[order]
    n = person.size
    flight = rng.random(n) < _FLIGHTS[profile[person]]
    # Two different ends of the journey, of the mode's vocabulary.
    places = np.where(flight, _AIRPORTS.size, _STATIONS.size)
    first = rng.integers(0, 1 << 30, size=n) % places
    second = (first + 1 + rng.integers(0, 1 << 30, size=n) % (places - 1)) % places
    origin = np.where(flight, _AIRPORTS[first % _AIRPORTS.size], _STATIONS[first])
    destination = np.where(flight, _AIRPORTS[second % _AIRPORTS.size], _STATIONS[second])
    epoch = _epoch_day(population)
    table = pa.table(
        {
            **_identified(population, person, prefix="R", width=9),
            "departed_at": _timestamps((epoch + day) * 86400 + seconds),
            "mode": _pick(["rail", "air"], flight.astype(np.int64)),
            "origin": pa.array(origin, type=pa.string()),
            "destination": pa.array(destination, type=pa.string()),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])


def build_counter(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw in-person visits to bank, social-insurance and government service counters."""
    profile = population.profile
    rate = np.where(population.silent, 0.0, _COUNTER_RATE[profile] * population.activity)
    zero = np.zeros(population.size, dtype=np.int64)
    person, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    seconds = _clock(rng, person.size, peaks=[(0.6, 9.5, 1.2), (0.4, 14.5, 1.2)], hours=(8.5, 17))
    order = _order(day, seconds, person)
    person, day, seconds = person[order], day[order], seconds[order]
    n = person.size
    country = (profile[person] == Profile.RURAL_NO_TRANSIT).astype(np.int64)
    venue = _categorical(rng, _VENUE_P[country])
    branch = _region_index(population.region[person]) * 20 + rng.integers(0, 20, size=n)
    branches = [f"B{k:04d}" for k in range(20 * 9)]
    epoch = _epoch_day(population)
    table = pa.table(
        {
            **_identified(population, person, prefix="CT", width=9),
            "served_at": _timestamps((epoch + day) * 86400 + seconds),
            "venue": _pick(VENUES, venue),
            "branch_code": _pick(branches, branch),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])
