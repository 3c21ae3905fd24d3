"""Medical settlements: visits, inpatient stays, deaths at discharge, identity defects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from liveness.simulate.identity import to_fullwidth, to_legacy_15, with_wrong_check
from liveness.simulate.population import REGION_CODES, Population, Profile
from liveness.simulate.traces.draws import (
    IntArray,
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

VISIT_TYPES = np.array(
    [
        "outpatient",
        "emergency",
        "pharmacy",
        "home_care",
        "inpatient_admission",
        "inpatient_discharge",
    ]
)
# Visits per person-year: outpatient, emergency, pharmacy, home_care (rows: Profile).
_VISIT_RATE = np.array(
    [
        [5.0, 0.2, 4.0, 0.0],
        [4.0, 0.2, 3.0, 0.0],
        [2.0, 0.1, 1.5, 0.0],
        [0.0, 0.0, 4.0, 5.0],
        [0.3, 0.0, 0.0, 0.0],
        [1.5, 0.1, 2.0, 0.5],
    ]
)
_INPATIENT_RATE = 0.1

# Share of medical rows given each identity-number defect.
LEGACY_SHARE = 0.02
FULLWIDTH_SHARE = 0.01
BAD_CHECK_SHARE = 0.005
LOWER_X_SHARE = 0.2


@dataclass(frozen=True)
class IdentityDefects:
    """Counts of medical rows carrying each identity-number defect."""

    legacy_15: int
    fullwidth: int
    bad_check: int
    lower_x: int


# Long by design: one linear recipe on one random stream; its order fixes the files.
def build_medical(
    *, rng: np.random.Generator, population: Population
) -> tuple[Trace, IdentityDefects]:
    """Draw medical settlements: visits, inpatient stays and deaths at discharge."""
    zero = np.zeros(population.size, dtype=np.int64)
    end = population.activity_end
    active = ~population.silent
    persons: list[IntArray] = []
    days: list[IntArray] = []
    kinds: list[IntArray] = []
    outcome: list[IntArray] = []
    for visit in range(4):
        rate = np.where(active, _VISIT_RATE[population.profile, visit] * population.activity, 0.0)
        p, d = _poisson_days(rng, rate=rate, lo=zero, hi=end)
        persons.append(p)
        days.append(d)
        kinds.append(np.full(p.size, visit))
        outcome.append(np.full(p.size, -1))

    stay_rate = np.where(
        active & (population.profile != Profile.OUT_OF_PROVINCE), _INPATIENT_RATE, 0.0
    )
    p, d = _poisson_days(rng, rate=stay_rate, lo=zero, hi=end)
    leave = d + rng.integers(3, 16, size=p.size)
    keep = leave < end[p]
    p, d, leave = p[keep], d[keep], leave[keep]
    persons += [p, p]
    days += [d, leave]
    kinds += [np.full(p.size, 4), np.full(p.size, 5)]
    outcome += [np.full(p.size, -1), np.zeros(p.size, dtype=np.int64)]

    dying = np.flatnonzero(population.hospital_death)
    admitted = dying[population.admission_day[dying] >= 0]
    persons += [admitted, dying]
    days += [population.admission_day[admitted], population.death_day[dying]]
    kinds += [np.full(admitted.size, 4), np.full(dying.size, 5)]
    outcome += [np.full(admitted.size, -1), np.ones(dying.size, dtype=np.int64)]

    person = np.concatenate(persons)
    day = np.concatenate(days)
    kind = np.concatenate(kinds)
    result = np.concatenate(outcome)
    seconds = _clock(rng, person.size, peaks=[(0.7, 9.5, 1.5), (0.3, 14.5, 1.5)], hours=(7.5, 17.5))
    order = _order(day, seconds, person)
    person, day, kind, result, seconds = (
        person[order],
        day[order],
        kind[order],
        result[order],
        seconds[order],
    )
    n = person.size

    # Institutions: hospitals (12), pharmacies (40) and home-care services (10) per region.
    prefix = {"H": 12, "Y": 40, "C": 10}
    vocabulary = [
        f"{letter}{code}{k:03d}"
        for code in REGION_CODES.tolist()
        for letter, count in prefix.items()
        for k in range(1, count + 1)
    ]
    base = _region_index(population.region[person]) * 62
    institution = base + np.select(
        [kind == 2, kind == 3],
        [12 + rng.integers(0, 40, size=n), 52 + rng.integers(0, 10, size=n)],
        default=rng.integers(0, 12, size=n),
    )

    ids = population.id_number[person]
    deceased = result == 1
    u = rng.random(n)
    legacy = (u < LEGACY_SHARE) & ~deceased
    fullwidth = (u >= LEGACY_SHARE) & (u < LEGACY_SHARE + FULLWIDTH_SHARE) & ~deceased
    bad_check = (
        (u >= LEGACY_SHARE + FULLWIDTH_SHARE)
        & (u < LEGACY_SHARE + FULLWIDTH_SHARE + BAD_CHECK_SHARE)
        & ~deceased
    )
    plain = ~(legacy | fullwidth | bad_check)
    lower_x = (
        plain & ~deceased & (np.strings.slice(ids, 17, 18) == "X") & (rng.random(n) < LOWER_X_SHARE)
    )
    text = ids.astype("U18")
    text[legacy] = to_legacy_15(ids[legacy])
    text[fullwidth] = to_fullwidth(ids[fullwidth])
    text[bad_check] = with_wrong_check(ids[bad_check], rng=rng)
    text[lower_x] = np.strings.lower(ids[lower_x])

    epoch = _epoch_day(population)
    table = pa.table(
        {
            "record_id": _ids("M", n, 9),
            "id_number": pa.array(text, type=pa.string()),
            "name": pa.array(population.name[person], type=pa.string()),
            "visit_at": _timestamps((epoch + day) * 86400 + seconds),
            "institution_code": _pick(vocabulary, institution),
            "visit_type": _pick(VISIT_TYPES, kind),
            "discharge_outcome": _pick(["alive", "deceased"], result),
            "city_code": pa.array(population.region[person]).cast(pa.string()),
        }
    )
    # Keep clean rows free of planted malformations, so each row carries at most one defect.
    protected = ~plain | lower_x | deceased | population.died[person]
    defects = IdentityDefects(
        legacy_15=int(legacy.sum()),
        fullwidth=int(fullwidth.sum()),
        bad_check=int(bad_check.sum()),
        lower_x=int(lower_x.sum()),
    )
    return Trace(table=table, day=day, person=person, protected=protected), defects
