"""Death evidence from civil affairs (cremation), the police (deregistration) and the registry.

The civil registry's death notices (`build_registry_notices`) draw from a stream of their own,
after everything else, so a city with them keeps every other file of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from liveness.simulate.identity import (
    chinese_names,
    compose_id17,
    full_id_numbers,
    to_legacy_15,
    with_wrong_check,
)
from liveness.simulate.population import FUNERAL_HOMES, NEVER, Population
from liveness.simulate.traces import Trace

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

# Probability that a death leaves no record at all (home burial in the countryside).
_NO_RECORD = np.array([0.02, 0.02, 0.6, 0.02, 0.3, 0.02])
_CREMATED = np.array([0.92, 0.92, 0.4, 0.92, 0.2, 0.92])
_DEREGISTERED = 0.88
_CREMATION_ID_BLANK = 0.02
_CREMATION_ID_WRONG = 0.02
_DEREG_LEGACY = 0.05
_REASONS = ["death", "abroad", "military", "duplicate", "moved_out", "other"]


@dataclass(frozen=True)
class DeathRecords:
    """Cremation and deregistration deliveries, plus what they reveal for the truth file."""

    cremation: Trace
    deregistration: Trace
    death_record: StrArray  # per person, truth vocabulary
    wrongly_reported_dead: IntArray  # person indices
    other_deregistrations: list[dict[str, str]]
    cremation_id_blank: IntArray
    cremation_id_wrong: IntArray
    deregistration_legacy_rows: int
    registered: BoolArray  # per person: the death was registered somewhere (any record)


def _iso(dates: npt.NDArray[np.datetime64]) -> pa.Array:
    """Format dates as YYYY-MM-DD, null for NaT."""
    return pa.array(dates.astype("datetime64[D]")).cast(pa.string())


def _by_record_date(day: IntArray, person: IntArray) -> IntArray:
    """Return the delivery order of death records: record date, then person."""
    result: IntArray = np.lexsort((person, day))
    return result


# Long by design: one linear recipe on one random stream; its order fixes the files.
def build_death_records(*, rng: np.random.Generator, population: Population) -> DeathRecords:
    """Draw the death records that the period's deliveries carry, true and false."""
    n = population.size
    days = population.days
    start = np.datetime64(population.start, "D")
    died = population.died
    profile = population.profile
    no_record = died & ~population.hospital_death & (rng.random(n) < _NO_RECORD[profile])
    cremated = died & ~no_record & (rng.random(n) < _CREMATED[profile])
    deregistered = died & ~no_record & (rng.random(n) < _DEREGISTERED)
    cremated_day = population.death_day + rng.integers(0, 6, size=n)
    dereg_day = population.death_day + rng.integers(14, 181, size=n)
    # Records dated after the period have not arrived yet.
    cremation_in = cremated & (cremated_day < days)
    dereg_in = deregistered & (dereg_day < days)

    record = np.full(n, "", dtype="U14")
    record[died] = "none"
    record[died & population.hospital_death] = "hospital_only"
    record[cremation_in] = "cremation"
    record[dereg_in] = "deregistration"
    record[cremation_in & dereg_in] = "both"

    # Wrongly reported dead: a clerk keys a living pensioner's number on someone else's death.
    alive = np.flatnonzero(~died & (population.death_day >= NEVER))
    wrong_count = min(alive.size, max(1, round(n * 2.5 / 20000)))
    wrong = np.sort(rng.choice(alive, size=wrong_count, replace=False))
    wrong_names = chinese_names(rng=rng, male=population.male[wrong])
    wrong_names = np.where(
        wrong_names == population.name[wrong], np.strings.add(wrong_names, "明"), wrong_names
    )
    wrong_record_day = rng.integers(0, max(days, 1), size=wrong_count)
    wrong_in_cremation = np.arange(wrong_count) % 2 == 0
    # The false records keep the usual delays between death and record.
    wrong_death_day = wrong_record_day - np.where(
        wrong_in_cremation,
        rng.integers(0, 6, size=wrong_count),
        rng.integers(14, 181, size=wrong_count),
    )

    # Cremation rows: true ones, then the false ones.
    cp = np.flatnonzero(cremation_in)
    fp = wrong[wrong_in_cremation]
    c_person = np.concatenate([cp, fp])
    c_day = np.concatenate([cremated_day[cp], wrong_record_day[wrong_in_cremation]])
    c_died = np.concatenate([population.death_day[cp], wrong_death_day[wrong_in_cremation]])
    c_name = np.concatenate([population.name[cp], wrong_names[wrong_in_cremation]])
    c_male = population.male[c_person]
    # The false record describes a stranger: their own birth date, not the pensioner's.
    c_birth = np.concatenate(
        [
            population.birth_date[cp],
            start - rng.integers(60 * 365, 95 * 365, size=fp.size).astype("timedelta64[D]"),
        ]
    )
    c_id = population.id_number[c_person].astype("U18")
    u = rng.random(c_person.size)
    true_row = np.arange(c_person.size) < cp.size
    blank = true_row & (u < _CREMATION_ID_BLANK)
    wrong_id = (
        true_row & (u >= _CREMATION_ID_BLANK) & (u < _CREMATION_ID_BLANK + _CREMATION_ID_WRONG)
    )
    c_id[wrong_id] = with_wrong_check(c_id[wrong_id], rng=rng)
    order = _by_record_date(c_day, c_person)
    c_person, c_day, c_died, c_name, c_male, c_birth, c_id, blank = (
        c_person[order],
        c_day[order],
        c_died[order],
        c_name[order],
        c_male[order],
        c_birth[order],
        c_id[order],
        blank[order],
    )
    wrong_id_sorted = wrong_id[order]
    m = c_person.size
    homes = np.array([FUNERAL_HOMES[int(r)] for r in population.region[c_person]], dtype="U8")
    cremation = pa.table(
        {
            "record_id": pa.array([f"R{k:07d}" for k in range(1, m + 1)], type=pa.string()),
            "id_number": pa.array(c_id, mask=blank, type=pa.string()),
            "name": pa.array(c_name, type=pa.string()),
            "sex": pa.array(np.where(c_male, "男", "女"), type=pa.string()),
            "birth_date": _iso(c_birth),
            "died_on": _iso(start + c_died.astype("timedelta64[D]")),
            "cremated_on": _iso(start + c_day.astype("timedelta64[D]")),
            "funeral_home": pa.array(homes, type=pa.string()),
            "region_code": pa.array(population.region[c_person]).cast(pa.string()),
        }
    )

    # Deregistrations: deaths, the false deaths, and a few living people changing numbers.
    dp = np.flatnonzero(dereg_in)
    fd = wrong[~wrong_in_cremation]
    others_pool = np.setdiff1d(alive, wrong)
    other_count = min(others_pool.size, max(2, round(n * 0.0005)))
    others = np.sort(rng.choice(others_pool, size=other_count, replace=False))
    other_reason = np.where(np.arange(other_count) % 2 == 0, 4, 3)
    other_day = rng.integers(0, max(days, 1), size=other_count)
    # The replacement number: same person and birth date, issued in another region.
    birth_ymd = np.array(
        [int(s[6:14]) for s in population.id_number[others].tolist()], dtype=np.int64
    )
    new_region = np.where(other_reason == 4, 330102, population.region[others])
    new_seq = (rng.integers(1, 499, size=other_count) * 2 + population.male[others]).astype(
        np.int64
    )
    new_ids = full_id_numbers(compose_id17(region=new_region, birth_ymd=birth_ymd, seq=new_seq))
    clash = new_ids == population.id_number[others]
    new_ids[clash] = full_id_numbers(
        compose_id17(region=new_region[clash], birth_ymd=birth_ymd[clash], seq=new_seq[clash] + 2)
    )
    # A duplicate is the spare number being cancelled in favour of the one on the roll.
    other_id = np.where(other_reason == 3, new_ids, population.id_number[others])
    other_new = np.where(other_reason == 3, population.id_number[others], new_ids)

    d_person = np.concatenate([dp, fd, others])
    d_day = np.concatenate([dereg_day[dp], wrong_record_day[~wrong_in_cremation], other_day])
    d_died = np.concatenate(
        [
            population.death_day[dp],
            wrong_death_day[~wrong_in_cremation],
            np.full(other_count, NEVER),
        ]
    )
    d_name = np.concatenate(
        [population.name[dp], wrong_names[~wrong_in_cremation], population.name[others]]
    )
    d_reason = np.concatenate([np.zeros(dp.size + fd.size, dtype=np.int64), other_reason])
    d_id = np.concatenate([population.id_number[dp], population.id_number[fd], other_id]).astype(
        "U18"
    )
    d_new = np.concatenate([np.full(dp.size + fd.size, ""), other_new]).astype("U18")
    legacy = (np.arange(d_person.size) < dp.size) & (rng.random(d_person.size) < _DEREG_LEGACY)
    d_id[legacy] = to_legacy_15(d_id[legacy])
    order = _by_record_date(d_day, d_person)
    d_person, d_day, d_died, d_name, d_reason, d_id, d_new = (
        d_person[order],
        d_day[order],
        d_died[order],
        d_name[order],
        d_reason[order],
        d_id[order],
        d_new[order],
    )
    k = d_person.size
    died_text = _iso(start + np.minimum(d_died, days + 10**5).astype("timedelta64[D]"))
    deregistration = pa.table(
        {
            "record_id": pa.array([f"D{i:07d}" for i in range(1, k + 1)], type=pa.string()),
            "id_number": pa.array(d_id, type=pa.string()),
            "name": pa.array(d_name, type=pa.string()),
            "deregistered_on": _iso(start + d_day.astype("timedelta64[D]")),
            "reason": pa.array(np.array(_REASONS)[d_reason], type=pa.string()),
            "died_on": pa.array(died_text.to_numpy(zero_copy_only=False), mask=d_reason != 0),
            "new_id_number": pa.array(d_new, mask=d_new == "", type=pa.string()),
        }
    )
    other_list = [
        {
            "person_ref": str(population.person_ref[p]),
            "reason": _REASONS[int(r)],
            "id_number": str(i),
            "new_id_number": str(j),
        }
        for p, r, i, j in zip(
            others.tolist(),
            other_reason.tolist(),
            other_id.tolist(),
            other_new.tolist(),
            strict=True,
        )
    ]
    return DeathRecords(
        cremation=Trace(table=cremation, day=c_day, person=c_person, protected=np.ones(m, bool)),
        deregistration=Trace(
            table=deregistration, day=d_day, person=d_person, protected=np.ones(k, bool)
        ),
        death_record=record,
        wrongly_reported_dead=wrong,
        other_deregistrations=other_list,
        cremation_id_blank=np.sort(c_person[blank]),
        cremation_id_wrong=np.sort(c_person[wrong_id_sorted]),
        deregistration_legacy_rows=int(legacy.sum()),
        registered=died & ~no_record,
    )


# The civil registry notifies within a day (the same day or the next) for this share of the
# deaths that get any record (the registry's coverage: the rest register late, on paper, or
# in another place). Of its notices, some lack the identity number (a death registered by
# a relative without the card), and some know the date of death to the month or year only.
NOTICE_SHARE = 0.6
_NOTICE_NO_NUMBER = 0.05
_NOTICE_NO_BIRTH_DATE = 0.05
_NOTICE_MONTH_ONLY = 0.03
_NOTICE_YEAR_ONLY = 0.01


@dataclass(frozen=True)
class RegistryNotices:
    """The civil registry's death notices, and who has one (for the truth file)."""

    notices: Trace
    notified: BoolArray  # per person: a notice was delivered within the period


def build_registry_notices(
    *, rng: np.random.Generator, population: Population, records: DeathRecords
) -> RegistryNotices:
    """Draw the civil registry's death notices: `registered` events within a day of the death."""
    n = population.size
    start = np.datetime64(population.start, "D")
    chosen = records.registered & (rng.random(n) < NOTICE_SHARE)
    day = population.death_day + rng.integers(0, 2, size=n)
    notified = chosen & (day < population.days)
    person = np.flatnonzero(notified)
    person = person[_by_record_date(day[person], person)]
    m = person.size
    u = rng.random((m, 3))
    died = start + population.death_day[person].astype("timedelta64[D]")
    died_text = np.asarray(_iso(died).to_numpy(zero_copy_only=False), dtype="U10")
    month_only = u[:, 2] < _NOTICE_MONTH_ONLY
    year_only = (u[:, 2] >= _NOTICE_MONTH_ONLY) & (u[:, 2] < _NOTICE_MONTH_ONLY + _NOTICE_YEAR_ONLY)
    died_text = np.where(month_only, np.strings.slice(died_text, 0, 7), died_text)
    died_text = np.where(year_only, np.strings.slice(died_text, 0, 4), died_text)
    table = pa.table(
        {
            "record_id": pa.array([f"CR{k:07d}" for k in range(1, m + 1)], type=pa.string()),
            "event": pa.array(np.full(m, "registered"), type=pa.string()),
            "id_number": pa.array(
                population.id_number[person], mask=u[:, 0] < _NOTICE_NO_NUMBER, type=pa.string()
            ),
            "name": pa.array(population.name[person], type=pa.string()),
            "sex": pa.array(np.where(population.male[person], "M", "F"), type=pa.string()),
            "birth_date": pa.array(
                _iso(population.birth_date[person]).to_numpy(zero_copy_only=False),
                mask=u[:, 1] < _NOTICE_NO_BIRTH_DATE,
                type=pa.string(),
            ),
            "region_code": pa.array(population.region[person]).cast(pa.string()),
            "died_on": pa.array(died_text, type=pa.string()),
            "registered_on": _iso(start + day[person].astype("timedelta64[D]")),
        }
    )
    notice = Trace(table=table, day=day[person], person=person, protected=np.ones(m, bool))
    return RegistryNotices(notices=notice, notified=notified)
