"""Activity traces: transit taps, citizen-card transactions, medical visits, face checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from liveness.simulate.cards import Cards
from liveness.simulate.identity import to_fullwidth, to_legacy_15, with_wrong_check
from liveness.simulate.population import NEVER, REGION_CODES, Population, Profile

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Events per person-year by profile (order of Profile), before the personal activity factor.
_TRANSIT_RATE = np.array([110.0, 30.0, 0.0, 0.0, 0.0, 0.0])
_PURCHASE_RATE = np.array([26.0, 12.0, 7.0, 0.0, 3.0, 3.0])
_FACE_RATE = np.array([0.04, 0.04, 0.03, 0.01, 1.5, 0.04])
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

_FACE_RESULTS = np.array(["pass", "fail", "no_liveness", "no_face"])
_FACE_CHANNELS = np.array(["app", "kiosk", "assisted", "proxy"])

# Share of medical rows given each identity-number defect.
LEGACY_SHARE = 0.02
FULLWIDTH_SHARE = 0.01
BAD_CHECK_SHARE = 0.005
LOWER_X_SHARE = 0.2


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


@dataclass(frozen=True)
class IdentityDefects:
    """Counts of medical rows carrying each identity-number defect."""

    legacy_15: int
    fullwidth: int
    bad_check: int
    lower_x: int


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


def build_face(*, rng: np.random.Generator, population: Population) -> Trace:
    """Draw face verifications people did on their own initiative."""
    rate = np.where(
        population.silent, 0.0, _FACE_RATE[population.profile] * np.sqrt(population.activity)
    )
    zero = np.zeros(population.size, dtype=np.int64)
    person, day = _poisson_days(rng, rate=rate, lo=zero, hi=population.activity_end)
    seconds = _clock(rng, person.size, peaks=[(1.0, 14.0, 4.0)], hours=(7.0, 22.99))
    order = _order(day, seconds, person)
    person, day, seconds = person[order], day[order], seconds[order]
    n = person.size
    result = _categorical(rng, np.tile([0.88, 0.05, 0.05, 0.02], (n, 1)))
    away = population.profile[person] == Profile.OUT_OF_PROVINCE
    channel = _categorical(
        rng, np.where(away[:, None], [0.90, 0.0, 0.05, 0.05], [0.55, 0.20, 0.20, 0.05])
    )
    score = np.select(
        [result == 0, result == 1, result == 2],
        [
            rng.integers(800, 1000, size=n),
            rng.integers(300, 700, size=n),
            rng.integers(500, 950, size=n),
        ],
        default=-1,
    )
    scores = [f"{k / 1000:.3f}" for k in range(1001)]
    # The face template id is a stable token per person, derived from the person index.
    token_rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(int(rng.integers(2**63))))
    )
    tokens = token_rng.integers(0, 2**62, size=population.size)
    face_people = np.unique(person)
    token_text = {int(p): f"FT{int(tokens[p]):016x}" for p in face_people}
    face_vocabulary = [token_text[int(p)] for p in face_people]
    epoch = _epoch_day(population)
    table = pa.table(
        {
            "record_id": _ids("V", n, 9),
            "id_number": pa.array(population.id_number[person], type=pa.string()),
            "verified_at": _timestamps((epoch + day) * 86400 + seconds),
            "result": _pick(_FACE_RESULTS, result),
            "channel": _pick(_FACE_CHANNELS, channel),
            "score": _pick(scores, score),
            "request_id": pa.nulls(n, pa.string()),
            "face_id": _pick(face_vocabulary, np.searchsorted(face_people, person)),
        }
    )
    return Trace(table=table, day=day, person=person, protected=np.ones(n, dtype=bool))
