"""Traces of care: health checks, vaccinations, long-term care, family doctors, care elsewhere."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from liveness.simulate.population import Population, Profile
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

# The contracted family doctor (家庭医生签约服务), by profile: the share of those who may sign
# who have signed (the disabled and bedridden and the homebound at any age; the others from 65
# with a chronic condition such as hypertension or diabetes, whose follow-ups are due every
# quarter), and the follow-ups a year per signed person: at home, at the centre, by phone.
# Few living out of the province keep a contract at home, and those few are called.
_SIGNED = np.array([0.35, 0.40, 0.30, 0.70, 0.02, 0.60])
_SIGNED_ANY_AGE = np.array([False, False, False, True, False, True])
_FOLLOW_UPS = np.array(
    [
        [0.0, 4.0, 1.5],
        [0.0, 4.0, 1.5],
        [0.5, 3.5, 1.0],  # the village doctor sometimes calls in at the farm
        [12.0, 0.0, 2.0],  # monthly home visits of the bedridden
        [0.0, 0.5, 3.0],
        [6.0, 0.5, 2.0],
    ]
)
FOLLOW_UP_TYPES = np.array(["home_visit", "clinic_follow_up", "phone_follow_up"])
_FOLLOW_UP_AGE = 65

# Cross-provincial direct settlement (跨省异地就医直接结算), by profile: the share who filed
# their residence elsewhere (异地安置备案) and see a doctor there, and their visits a year
# (outpatient and pharmacy; a personal rate in `_REMOTE_VISITS`). Most of those living out of
# the province; a few townspeople who winter in the south (候鸟老人), only in winter.
_REMOTE = np.array([0.01, 0.01, 0.0, 0.0, 0.75, 0.0])
_REMOTE_VISITS = (6.0, 10.0)
_REMOTE_PHARMACY = 0.35  # share of the visits that are a pharmacy purchase
_REMOTE_INPATIENT = 0.12  # inpatient stays a year
_WINTER_MONTHS = np.array([0, 1, 2, 10, 11])  # November to March (January = 0)
# The provinces they live in (code, share): family elsewhere, or the southern sun in winter.
_PROVINCES = np.array(["310000", "320000", "440000", "110000", "340000", "510000"])
_PROVINCE_P = np.array([0.25, 0.2, 0.2, 0.1, 0.1, 0.15])
_WINTER_PROVINCES = np.array(["460000", "450000", "530000", "440000"])
REMOTE_VISIT_TYPES = np.array(
    ["outpatient", "pharmacy", "inpatient_admission", "inpatient_discharge"]
)


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


def _local_centre(population: Population, person: IntArray) -> IntArray:
    """Return each row's own community health centre: one of the eight in their region, kept."""
    result: IntArray = _region_index(population.region[person]) * 8 + person % 8
    return result


def build_family_doctor(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw the contracted family doctors' follow-ups: at home, at the centre, by phone."""
    n_all = population.size
    profile = population.profile
    eligible = _SIGNED_ANY_AGE[profile] | (population.age >= _FOLLOW_UP_AGE)
    signed = ~population.silent & eligible & (rng.random(n_all) < _SIGNED[profile])
    zero = np.zeros(n_all, dtype=np.int64)
    persons: list[IntArray] = []
    days: list[IntArray] = []
    types: list[IntArray] = []
    for kind in range(FOLLOW_UP_TYPES.size):
        rate = np.where(signed, _FOLLOW_UPS[profile, kind], 0.0)
        p, d = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
        persons.append(p)
        days.append(d)
        types.append(np.full(p.size, kind, dtype=np.int64))
    person, day, visit = np.concatenate(persons), np.concatenate(days), np.concatenate(types)
    seconds = _clock(rng, person.size, peaks=[(0.6, 9.5, 1.0), (0.4, 15.0, 1.0)], hours=(8.0, 17.5))
    order = _order(day, seconds, person)
    person, day, seconds, visit = person[order], day[order], seconds[order], visit[order]
    centre = _local_centre(population, person)
    # Five family-doctor teams per centre; a signed person keeps their team.
    doctor = centre * 5 + person // 8 % 5
    epoch = _epoch_day(population)
    table = pa.table(
        {
            **_identified(population, person, prefix="FD", width=9),
            "visited_at": _timestamps((epoch + day) * 86400 + seconds),
            "visit_type": _pick(FOLLOW_UP_TYPES, visit),
            "doctor_id": _pick([f"D{k:04d}" for k in range(8 * 9 * 5)], doctor),
            "institution_code": _pick([f"S{k:03d}" for k in range(8 * 9)], centre),
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])


def build_remote_medical(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw the cross-provincial direct settlements of those registered as living elsewhere."""
    n_all = population.size
    profile = population.profile
    files = ~population.silent & (rng.random(n_all) < _REMOTE[profile])
    away = profile == Profile.OUT_OF_PROVINCE
    low, high = _REMOTE_VISITS
    personal = rng.uniform(low, high, size=n_all)
    zero = np.zeros(n_all, dtype=np.int64)
    end = population.activity_end
    p1, d1 = _poisson_days(rng, rate=np.where(files, personal, 0.0), lo=zero, hi=end)
    # Who winters in the south is seen there in winter only: their other days are dropped.
    month = (np.datetime64(population.start, "D") + d1).astype("datetime64[M]").astype(np.int64)
    keep = away[p1] | np.isin(month % 12, _WINTER_MONTHS)
    p1, d1 = p1[keep], d1[keep]
    kind = (rng.random(p1.size) < _REMOTE_PHARMACY).astype(np.int64)
    # An inpatient stay: the admission, and the discharge 3 to 15 days later if it falls in
    # the period and before the person's ordinary life ends.
    stays = np.where(files & away, _REMOTE_INPATIENT, 0.0)
    p2, d2 = _poisson_days(rng, rate=stays, lo=zero, hi=end)
    out = d2 + rng.integers(3, 16, size=p2.size)
    home = out < end[p2]
    person = np.concatenate([p1, p2, p2[home]])
    day = np.concatenate([d1, d2, out[home]])
    kind = np.concatenate([kind, np.full(p2.size, 2), np.full(int(home.sum()), 3)])
    seconds = _clock(rng, person.size, peaks=[(0.6, 9.5, 1.5), (0.4, 15.0, 1.5)], hours=(7.5, 20.0))
    order = _order(day, seconds, person)
    person, day, seconds, kind = person[order], day[order], seconds[order], kind[order]
    # Each person lives in one province (the winterers in a southern one) and goes to one
    # of a few hospitals (H) and pharmacies (P) there, under the national institution codes.
    lives = _PROVINCES[rng.choice(_PROVINCES.size, size=n_all, p=_PROVINCE_P)]
    winters = _WINTER_PROVINCES[rng.integers(0, _WINTER_PROVINCES.size, size=n_all)]
    province = np.where(away, lives, winters)[person]
    serial = pa.array(person % 997 * 3 + rng.integers(0, 3, size=person.size)).cast(pa.string())
    institution = pc.binary_join_element_wise(
        pa.array(np.where(kind == 1, "P", "H"), type=pa.string()),
        pa.array(province, type=pa.string()),
        pc.utf8_lpad(serial, width=5, padding="0"),
        "",
    )
    epoch = _epoch_day(population)
    table = pa.table(
        {
            **_identified(population, person, prefix="YD", width=9),
            "settled_at": _timestamps((epoch + day) * 86400 + seconds),
            "visit_type": _pick(REMOTE_VISIT_TYPES, kind),
            "province_code": pa.array(province, type=pa.string()),
            "institution_code": institution,
        }
    )
    return Trace(table=table, day=day, person=person, protected=population.died[person])
