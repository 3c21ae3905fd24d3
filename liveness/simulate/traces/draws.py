"""What every trace source draws with: the Trace rows, clocks, Poisson days, ids and text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from liveness.simulate.population import REGION_CODES, Population

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Trace:
    """Rows of one source in delivery order, with the helper keys used to plant anomalies."""

    table: pa.Table  # exactly the contract columns, sorted by time then record_id
    day: IntArray  # day index of the record's event or record date
    person: IntArray  # person index the record is about, -1 for none
    protected: BoolArray  # rows that must not be corrupted (truth depends on them)


def _poisson_days(
    rng: np.random.Generator, *, rate: FloatArray, lo: IntArray, hi: IntArray
) -> tuple[IntArray, IntArray]:
    """Draw Poisson counts of events per person in [lo, hi) and uniform days for them."""
    length = np.maximum(hi - lo, 0)
    counts = rng.poisson(rate * length / 365.0)
    person = np.repeat(np.arange(rate.shape[0]), counts)
    day = lo[person] + np.floor(rng.random(person.size) * length[person]).astype(np.int64)
    return person, day


def _clock(
    rng: np.random.Generator,
    size: int,
    *,
    peaks: list[tuple[float, float, float]],
    hours: tuple[float, float],
) -> IntArray:
    """Draw seconds of the day from a mixture of normal peaks (weight, centre hour, spread)."""
    weights = np.array([w for w, _, _ in peaks])
    which = rng.choice(len(peaks), size=size, p=weights / weights.sum())
    centre = np.array([c for _, c, _ in peaks])[which]
    spread = np.array([s for _, _, s in peaks])[which]
    hour = rng.normal(centre, spread)
    # Hours outside opening times are redrawn uniformly rather than piled on the boundary.
    outside = (hour < hours[0]) | (hour > hours[1])
    hour[outside] = rng.uniform(hours[0], hours[1], size=int(outside.sum()))
    result: IntArray = (hour * 3600).astype(np.int64)
    return result


def _categorical(rng: np.random.Generator, probabilities: FloatArray) -> IntArray:
    """Draw one category per row of a (rows x categories) probability matrix."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(probabilities.shape[0]) * cumulative[:, -1]
    result: IntArray = (u[:, None] >= cumulative).sum(axis=1)
    return np.minimum(result, probabilities.shape[1] - 1)


def _timestamps(seconds: IntArray) -> pa.Array:
    """Format epoch seconds (local time) as `YYYY-MM-DD HH:MM:SS`."""
    # Arrow renders naive second timestamps exactly in this form, far faster than strftime.
    return pa.array(seconds.astype("datetime64[s]")).cast(pa.string())


def _ids(prefix: str, count: int, width: int) -> pa.Array:
    """Return record ids `prefix` + zero-padded serial 1..count."""
    digits = pc.utf8_lpad(
        pa.array(np.arange(1, count + 1)).cast(pa.string()), width=width, padding="0"
    )
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _pick(vocabulary: list[str] | npt.NDArray[np.str_], index: IntArray) -> pa.Array:
    """Return vocabulary[index] as an Arrow string array, null where index is negative."""
    values = pa.array(list(vocabulary), type=pa.string())
    return values.take(pa.array(index, mask=index < 0))


def money_text(cents: IntArray, mask: BoolArray | None = None) -> pa.Array:
    """Format cents as yuan with two decimals."""
    yuan = pa.array(cents // 100).cast(pa.string())
    fraction = pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), width=2, padding="0")
    text = pc.binary_join_element_wise(yuan, fraction, ".")
    if mask is not None:
        text = pc.if_else(pa.array(mask), pa.nulls(len(text), pa.string()), text)
    return text


def _region_index(region: IntArray) -> IntArray:
    """Return the position of each region code in REGION_CODES."""
    result: IntArray = np.searchsorted(REGION_CODES, region)
    return result


def _epoch_day(population: Population) -> int:
    """Return the period's first day as days since 1970-01-01."""
    return int(np.datetime64(population.start, "D").astype(np.int64))


def _order(day: IntArray, seconds: IntArray, person: IntArray) -> IntArray:
    """Return the delivery order: by time, ties by person then generation order."""
    result: IntArray = np.lexsort((person, seconds, day))
    return result


def _yearly_days(
    rng: np.random.Generator,
    *,
    person: IntArray,
    month_weights: FloatArray,
    population: Population,
) -> tuple[IntArray, IntArray]:
    """Draw one event a year per person, in a month drawn from `month_weights` (Jan..Dec).

    Each person keeps their month and day year after year (people go in their season);
    events outside the person's active period are dropped. Returns (person, day index).
    """
    weights = np.asarray(month_weights, dtype=np.float64)
    month = rng.choice(12, size=person.size, p=weights / weights.sum())
    day_in_month = rng.integers(0, 28, size=person.size)
    start = np.datetime64(population.start, "D")
    first_year = start.astype("datetime64[Y]")
    end = population.activity_end[person]
    persons: list[IntArray] = []
    days: list[IntArray] = []
    # One pass per calendar year the period touches: a handful, never one per person.
    for year in range(population.days // 365 + 2):
        months = (first_year + year).astype("datetime64[M]") + month.astype("timedelta64[M]")
        index = (months.astype("datetime64[D]") + day_in_month - start).astype(np.int64)
        keep = (index >= 0) & (index < end)
        persons.append(person[keep])
        days.append(index[keep])
    return np.concatenate(persons), np.concatenate(days)


def _dates_text(population: Population, day: IntArray) -> pa.Array:
    """Format day indexes of the period as `YYYY-MM-DD`."""
    days = np.datetime64(population.start, "D") + day.astype("timedelta64[D]")
    return pa.array(days).cast(pa.string())


def _identified(
    population: Population, person: IntArray, *, prefix: str, width: int
) -> dict[str, pa.Array]:
    """Return the leading columns of a record known by identity number: id, number, name."""
    return {
        "record_id": _ids(prefix, person.size, width),
        "id_number": pa.array(population.id_number[person], type=pa.string()),
        "name": pa.array(population.name[person], type=pa.string()),
    }
