"""The simulated pensioners: who they are, how they live, when they die."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from liveness.simulate.identity import (
    chinese_names,
    compose_id17,
    full_id_numbers,
    unique_sequences,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]
DateArray = npt.NDArray[np.datetime64]

# Sentinel day index for "does not die within the period"; far beyond any period length.
NEVER = 1 << 40

REGION_CODES = np.array(
    [330702, 330703, 330723, 330726, 330727, 330781, 330782, 330783, 330784], dtype=np.int64
)
_REGION_WEIGHTS = np.array([0.18, 0.12, 0.08, 0.08, 0.04, 0.12, 0.20, 0.12, 0.06])
# Older residents often hold numbers issued elsewhere in the province.
_OTHER_ID_REGIONS = np.array([330102, 330203, 330302, 330402, 330602, 331002], dtype=np.int64)

FUNERAL_HOMES = {
    330702: "金华市殡仪馆",
    330703: "金华市殡仪馆",
    330723: "武义县殡仪馆",
    330726: "浦江县殡仪馆",
    330727: "磐安县殡仪馆",
    330781: "兰溪市殡仪馆",
    330782: "义乌市殡仪馆",
    330783: "东阳市殡仪馆",
    330784: "永康市殡仪馆",
}


class Profile(IntEnum):
    """Way of life, which decides what traces a living person leaves."""

    ACTIVE_URBAN = 0
    MODERATE = 1
    RURAL_NO_TRANSIT = 2
    BEDRIDDEN = 3
    OUT_OF_PROVINCE = 4
    HOMEBOUND = 5


PROFILE_NAMES = np.array([p.name.lower() for p in Profile])
_PROFILE_SHARES = np.array([0.55, 0.20, 0.10, 0.07, 0.05, 0.03])

BENEFIT_TYPES = np.array(
    [
        "enterprise_pension",
        "resident_pension",
        "institution_pension",
        "work_injury_long_term",
        "survivor_pension",
    ]
)
_BENEFIT_SHARES = np.array([0.60, 0.25, 0.10, 0.03, 0.02])
# Monthly amount range in yuan per benefit type, same order as BENEFIT_TYPES.
_AMOUNT_RANGES = np.array([[2500, 5000], [200, 400], [5000, 9000], [2000, 4000], [1000, 2500]])


def annual_death_probability(age: npt.ArrayLike) -> FloatArray:
    """Return the Gompertz annual probability of death at each age (1% at 65, 20% at 95)."""
    a = np.asarray(age, dtype=np.float64)
    q: FloatArray = np.minimum(0.01 * np.exp(0.0999 * (a - 65.0)), 0.5)
    return q


@dataclass(frozen=True)
class Population:
    """Per-person arrays of the simulated city, indexed by dense person index."""

    start: date
    days: int
    person_ref: StrArray
    id_number: StrArray
    name: StrArray
    male: BoolArray
    birth_date: DateArray
    age: IntArray
    region: IntArray
    grid_code: StrArray
    profile: IntArray
    silent: BoolArray
    activity: FloatArray
    benefit_type: IntArray
    amount_cents: IntArray
    death_day: IntArray
    hospital_death: BoolArray
    admission_day: IntArray

    @property
    def size(self) -> int:
        """Return the number of persons."""
        return int(self.person_ref.shape[0])

    @property
    def died(self) -> BoolArray:
        """Return who dies within the period."""
        result: BoolArray = self.death_day < self.days
        return result

    @property
    def activity_end(self) -> IntArray:
        """Return the day index (exclusive) at which the person's own traces stop."""
        end = np.minimum(self.death_day, self.days)
        # A hospital death ends ordinary life at admission, not at death.
        result: IntArray = np.where(self.hospital_death, np.maximum(self.admission_day, 0), end)
        return result


def _birth_dates(*, rng: np.random.Generator, start: date, age: IntArray) -> DateArray:
    """Draw birth dates so that each person is exactly `age` years old on `start`."""
    anniversaries = np.empty(age.shape[0], dtype="datetime64[D]")
    for a in np.unique(age).tolist():
        year = start.year - a
        # 29 February start dates have no anniversary in common years.
        day = start.day if not (start.month == 2 and start.day == 29) else 28
        anniversaries[age == a] = np.datetime64(date(year, start.month, day), "D")
    back = rng.integers(0, 365, size=age.shape[0])
    result: DateArray = anniversaries - back.astype("timedelta64[D]")
    return result


def _ymd(dates: DateArray) -> IntArray:
    """Return dates as YYYYMMDD integers."""
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    months = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    days = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    result: IntArray = years * 10000 + months * 100 + days
    return result


def _ages(*, rng: np.random.Generator, n: int) -> IntArray:
    """Draw ages 60..100 from a declining pyramid: cohort survival times shrinking cohorts."""
    ages = np.arange(60, 101)
    survival = np.concatenate([[1.0], np.cumprod(1.0 - annual_death_probability(ages[:-1]))])
    weights = survival * 0.985 ** (ages - 60)
    result: IntArray = rng.choice(ages, size=n, p=weights / weights.sum()).astype(np.int64)
    return result


def _grid_codes(*, rng: np.random.Generator, region: IntArray) -> StrArray:
    """Assign each person a community grid of their region, about one grid per 300 persons."""
    grid_index = np.zeros(region.shape[0], dtype=np.int64)
    for code in REGION_CODES.tolist():
        members = np.flatnonzero(region == code)
        grids = max(1, round(members.size / 300))
        grid_index[members] = rng.integers(0, grids, size=members.size)
    street = np.strings.zfill((grid_index // 6 + 1).astype("U3"), 3)
    grid = np.strings.zfill((grid_index % 6 + 1).astype("U2"), 2)
    result: StrArray = np.strings.add(
        np.strings.add(np.strings.add(region.astype("U6"), "-"), np.strings.add(street, "-")), grid
    )
    return result


# Long by design: one linear recipe over the random streams; its order fixes the files.
def build_population(
    *, rngs: dict[str, np.random.Generator], persons: int, start: date, days: int
) -> Population:
    """Draw the whole population, its ways of life and its deaths within the period."""
    rng = rngs["population"]
    n = persons
    age = _ages(rng=rng, n=n)
    # Women outlive men: their share rises from 50% at 75 to 65% at 100.
    p_female = 0.5 + 0.15 * np.clip((age - 75) / 25.0, 0.0, 1.0)
    male = rng.random(n) >= p_female
    birth = _birth_dates(rng=rng, start=start, age=age)
    region = REGION_CODES[rng.choice(REGION_CODES.size, size=n, p=_REGION_WEIGHTS)]
    grid_code = _grid_codes(rng=rng, region=region)

    id_rng = rngs["identity"]
    id_region = np.where(
        id_rng.random(n) < 0.9,
        region,
        _OTHER_ID_REGIONS[id_rng.integers(0, _OTHER_ID_REGIONS.size, size=n)],
    )
    ymd = _ymd(birth)
    seq = unique_sequences(rng=id_rng, region=id_region, birth_ymd=ymd, male=male)
    id_number = full_id_numbers(compose_id17(region=id_region, birth_ymd=ymd, seq=seq))
    name = chinese_names(rng=rngs["names"], male=male)
    person_ref = np.strings.add("P", np.strings.zfill(np.arange(1, n + 1).astype("U12"), 7))

    profile = rng.choice(_PROFILE_SHARES.size, size=n, p=_PROFILE_SHARES).astype(np.int64)
    # Some bedridden people leave nothing at all: no relative settles anything in their name.
    silent = (profile == Profile.BEDRIDDEN) & (rng.random(n) < 0.25)
    activity = rng.gamma(shape=3.0, scale=1.0 / 3.0, size=n)
    benefit = rng.choice(_BENEFIT_SHARES.size, size=n, p=_BENEFIT_SHARES).astype(np.int64)
    # Country people mostly draw the resident (rural) pension.
    rural = (profile == Profile.RURAL_NO_TRANSIT) & (rng.random(n) < 0.6)
    benefit = np.where(rural, 1, benefit)
    low, high = _AMOUNT_RANGES[benefit, 0], _AMOUNT_RANGES[benefit, 1]
    amount_cents = rng.integers(low * 100, high * 100 + 1)

    death_rng = rngs["deaths"]
    daily_hazard = -np.log1p(-annual_death_probability(age)) / 365.0
    waiting = death_rng.exponential(1.0 / daily_hazard)
    death_day = np.where(waiting < days, np.floor(waiting), NEVER).astype(np.int64)
    died = death_day < days
    p_hospital = np.where(profile == Profile.RURAL_NO_TRANSIT, 0.15, 0.35)
    p_hospital = np.where(profile == Profile.OUT_OF_PROVINCE, 0.0, p_hospital)
    hospital_death = died & (death_rng.random(n) < p_hospital)
    admission_day = np.where(
        hospital_death, death_day - death_rng.integers(1, 21, size=n), NEVER
    ).astype(np.int64)
    return Population(
        start=start,
        days=days,
        person_ref=person_ref,
        id_number=id_number,
        name=name,
        male=male,
        birth_date=birth,
        age=age,
        region=region,
        grid_code=grid_code,
        profile=profile,
        silent=silent,
        activity=activity,
        benefit_type=benefit,
        amount_cents=amount_cents,
        death_day=death_day,
        hospital_death=hospital_death,
        admission_day=admission_day,
    )
