"""Traces of care: annual health checks of the over-65s, vaccinations, long-term care."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from liveness.simulate.population import Population
from liveness.simulate.traces.draws import (
    IntArray,
    Trace,
    _clock,
    _dates_text,
    _epoch_day,
    _identified,
    _order,
    _pick,
    _poisson_days,
    _region_index,
    _timestamps,
    _yearly_days,
)

# Share of the over-65s who take the free yearly check at their community health centre, by
# profile (order of Profile): most townspeople and villagers; the bedridden and homebound
# when the family doctor comes; few of those living out of the province.
_CHECK = np.array([0.68, 0.65, 0.62, 0.35, 0.10, 0.45])
# The check campaigns run in spring and autumn (January..December).
_CHECK_MONTHS = np.array([1, 2, 12, 15, 15, 12, 5, 4, 10, 12, 8, 4], dtype=np.float64)
_CHECK_AGE = 65

# Share of the over-60s vaccinated against influenza each season, by profile, in autumn;
# some on the very day of their health check, at the same centre (the same visit, recorded
# twice: the two sources share an independence group).
_FLU = np.array([0.25, 0.22, 0.15, 0.10, 0.05, 0.15])
_FLU_MONTHS = np.array([5, 2, 0, 0, 0, 0, 0, 0, 8, 45, 30, 10], dtype=np.float64)
_FLU_WITH_CHECK = 0.35
_OTHER_VACCINE = 0.04  # pneumococcal or herpes zoster, any time of year
VACCINES = np.array(["influenza", "pneumococcal", "herpes_zoster"])

# Long-term care, by profile: who receives it, and the share of those who live in a nursing
# home (a care record every day) rather than at home (a carer's visit, weekly or fortnightly).
_LTC = np.array([0.0, 0.01, 0.0, 0.55, 0.0, 0.25])
_NURSING_HOME = np.array([0.0, 0.2, 0.0, 0.5, 0.0, 0.2])
_HOME_VISITS = np.array([0.0, 26.0, 0.0, 52.0, 0.0, 26.0])
LTC_SERVICES = np.array(["nursing_home_day", "home_visit"])


def _centres(population: Population, person: IntArray, rng: np.random.Generator) -> pa.Array:
    """Return the community health centre of each row: one of eight in the person's region."""
    index = _region_index(population.region[person]) * 8 + rng.integers(0, 8, size=person.size)
    return _pick([f"S{k:03d}" for k in range(8 * 9)], index)


def build_health_checks(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw the yearly health checks of the over-65s."""
    takes = (
        ~population.silent
        & (population.age >= _CHECK_AGE)
        & (rng.random(population.size) < _CHECK[population.profile])
    )
    person, day = _yearly_days(
        rng, person=np.flatnonzero(takes), month_weights=_CHECK_MONTHS, population=population
    )
    order = _order(day, np.zeros_like(day), person)
    person, day = person[order], day[order]
    table = pa.table(
        {
            **_identified(population, person, prefix="HC", width=8),
            "checked_on": _dates_text(population, day),
            "institution_code": _centres(population, person, rng),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])


def build_vaccinations(*, rng: np.random.Generator, population: Population, checks: Trace) -> Trace:
    """Draw vaccinations: influenza each autumn (some at the health check), and a few others."""
    n_all = population.size
    flu = (
        ~population.silent & (population.age >= 60) & (rng.random(n_all) < _FLU[population.profile])
    )
    person, day = _yearly_days(
        rng, person=np.flatnonzero(flu), month_weights=_FLU_MONTHS, population=population
    )
    check_day = np.full(n_all, -1, dtype=np.int64)
    check_day[checks.person] = checks.day
    same_visit = (check_day[person] >= 0) & (rng.random(person.size) < _FLU_WITH_CHECK)
    day = np.where(same_visit, check_day[person], day)
    other = ~population.silent & (population.age >= 65) & (rng.random(n_all) < _OTHER_VACCINE)
    zero = np.zeros(n_all, dtype=np.int64)
    p2, d2 = _poisson_days(rng, rate=np.where(other, 1.0, 0.0), lo=zero, hi=population.activity_end)
    vaccine = np.concatenate([np.zeros(person.size, dtype=np.int64), rng.integers(1, 3, p2.size)])
    person, day = np.concatenate([person, p2]), np.concatenate([day, d2])
    seconds = _clock(rng, person.size, peaks=[(0.7, 9.5, 1.2), (0.3, 14.5, 1.2)], hours=(8.0, 16.5))
    order = _order(day, seconds, person)
    person, day, seconds, vaccine = person[order], day[order], seconds[order], vaccine[order]
    epoch = _epoch_day(population)
    table = pa.table(
        {
            **_identified(population, person, prefix="VX", width=8),
            "vaccinated_at": _timestamps((epoch + day) * 86400 + seconds),
            "vaccine": _pick(VACCINES, vaccine),
            "institution_code": _centres(population, person, rng),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])


def build_long_term_care(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw long-term care records: a nursing home's daily lines, or a carer's home visits."""
    n_all = population.size
    profile = population.profile
    cared = ~population.silent & (rng.random(n_all) < _LTC[profile])
    in_home = cared & (rng.random(n_all) < _NURSING_HOME[profile])
    # A resident has a line for every day until their ordinary life ends (a hospital
    # admission or death), from the period's start: they moved in before it.
    residents = np.flatnonzero(in_home)
    stay = population.activity_end[residents]
    p1 = np.repeat(residents, stay)
    d1 = np.arange(p1.size) - np.repeat(np.cumsum(stay) - stay, stay)
    zero = np.zeros(n_all, dtype=np.int64)
    rate = np.where(cared & ~in_home, _HOME_VISITS[profile], 0.0)
    p2, d2 = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    person = np.concatenate([p1, p2])
    day = np.concatenate([d1, d2]).astype(np.int64)
    service = np.concatenate([np.zeros(p1.size, np.int64), np.ones(p2.size, np.int64)])
    order = _order(day, np.zeros_like(day), person)
    person, day, service = person[order], day[order], service[order]
    # Each nursing home or care service of a region (ten of them) keeps its own records.
    provider = _region_index(population.region[person]) * 10 + person % 10
    table = pa.table(
        {
            **_identified(population, person, prefix="LT", width=10),
            "cared_on": _dates_text(population, day),
            "service": _pick(LTC_SERVICES, service),
            "institution_code": _pick([f"N{k:03d}" for k in range(10 * 9)], provider),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])
