"""Simulate a whole city of pensioners and write every department's deliveries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from liveness.simulate.cards import Cards, build_cards
from liveness.simulate.deaths import DeathRecords, build_death_records, build_registry_notices
from liveness.simulate.deliveries import Planted, write_csv, write_daily, write_monthly
from liveness.simulate.population import (
    BENEFIT_TYPES,
    PROFILE_NAMES,
    Population,
    build_population,
)
from liveness.simulate.traces import (
    IdentityDefects,
    Trace,
    build_card_txn,
    build_community,
    build_counter,
    build_face,
    build_family_doctor,
    build_health_checks,
    build_long_term_care,
    build_medical,
    build_remote_medical,
    build_transit,
    build_travel,
    build_vaccinations,
    money_text,
)

# The data scenarios beyond the four built-in trace sources, as sources.toml declares them.
SCENARIOS = (
    "travel", "health_check", "community", "counter", "ltc", "vaccination",
    "remote_medical", "family_doctor",
)  # fmt: skip

# Independent random sub-streams, one per concern, so that changing one part of the
# simulation leaves the draws of every other part (and their files) unchanged.
_STREAMS = (
    "population",
    "identity",
    "names",
    "deaths",
    "registry",
    "cards",
    "transit",
    "card_txn",
    "medical",
    "face",
    "death_records",
    "deliveries",
    # The data scenarios: last, so that the streams above draw as they did before them.
    *SCENARIOS,
    # The civil registry's death notices, after the scenarios for the same reason.
    "registry_notice",
)
SILENT_DAYS = 5


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote: persons, deaths within the period, files and trace rows."""

    persons: int
    deaths: int
    files: int
    traces: int
    out: Path


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Derive one PCG64 generator per concern from the seed."""
    return {
        name: np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(k,))))
        for k, name in enumerate(_STREAMS)
    }


def _dates(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Format datetime64 days as YYYY-MM-DD strings, null where masked or NaT."""
    days = values.astype("datetime64[D]")
    hide = np.isnat(days) if mask is None else (mask | np.isnat(days))
    return pa.array(days, mask=hide).cast(pa.string())


def _registry(*, rng: np.random.Generator, population: Population) -> pa.Table:
    """Build the benefit roll as at the period start."""
    n = population.size
    start = np.datetime64(population.start, "D")
    # Benefits began around the 60th birthday (women in enterprises often at 55 or 50).
    years = np.where(population.male | (rng.random(n) < 0.5), 60, 55)
    began = population.birth_date + (years * 365.25).astype("timedelta64[D]")
    began = began + rng.integers(0, 60, size=n).astype("timedelta64[D]")
    began = np.minimum(began, start - np.timedelta64(1, "D"))
    bank = np.strings.add("6228", rng.integers(10**14, 10**15, size=n).astype("U15"))
    prefixes = np.array(["13", "15", "17", "18", "19"])
    phone = np.strings.add(
        prefixes[rng.integers(0, prefixes.size, size=n)],
        rng.integers(10**8, 10**9, size=n).astype("U9"),
    )
    status = np.where(rng.random(n) < 0.995, "active", "suspended")
    # Addresses from the person's index, with no draw from `rng`: the other columns stay as
    # they were. Neighbours in the roll live in the same building, so address order walks.
    index = np.arange(n)
    address = np.strings.add(
        np.strings.add(population.grid_code, "·"),
        np.strings.add(
            np.strings.add((index // 24 % 40 + 1).astype("U3"), "号楼"),
            np.strings.add((index // 4 % 6 + 1).astype("U2"), (index % 4 + 1).astype("U2")),
        ),
    )
    address = np.strings.add(np.strings.add(address, "0"), "室")
    certified = start - rng.integers(1, 366, size=n).astype("timedelta64[D]")
    return pa.table(
        {
            "person_ref": pa.array(population.person_ref, type=pa.string()),
            "id_number": pa.array(population.id_number, type=pa.string()),
            "name": pa.array(population.name, type=pa.string()),
            "sex": pa.array(np.where(population.male, "M", "F"), type=pa.string()),
            "birth_date": _dates(population.birth_date),
            "benefit_type": pa.array(BENEFIT_TYPES[population.benefit_type], type=pa.string()),
            "monthly_amount": money_text(population.amount_cents),
            "benefit_start": _dates(began),
            "bank_account": pa.array(bank, mask=rng.random(n) < 0.05, type=pa.string()),
            "phone": pa.array(phone, mask=rng.random(n) < 0.15, type=pa.string()),
            "address": pa.array(address, type=pa.string()),
            "region_code": pa.array(population.region).cast(pa.string()),
            "grid_code": pa.array(population.grid_code, type=pa.string()),
            "status": pa.array(status, type=pa.string()),
            "last_certified_on": _dates(certified, mask=rng.random(n) < 0.05),
        }
    )


def _cards_table(*, cards: Cards, population: Population) -> pa.Table:
    """Build the card issuance table, sorted by card number."""
    order = np.argsort(cards.card_no, kind="stable")
    return pa.table(
        {
            "card_no": pa.array(cards.card_no[order], type=pa.string()),
            "card_kind": pa.array(cards.kind[order], type=pa.string()),
            "id_number": pa.array(population.id_number[cards.owner[order]], type=pa.string()),
            "issued_on": _dates(cards.issued_on[order]),
            "cancelled_on": _dates(cards.cancelled_on[order]),
        }
    )


def _truth(
    *,
    population: Population,
    records: DeathRecords,
    used_after_death: np.ndarray,
    notified: np.ndarray,
) -> pa.Table:
    """Build the ground truth per person, for tests and demos, never for the engine."""
    n = population.size
    start = np.datetime64(population.start, "D")
    died = population.died
    death_date = start + np.where(died, population.death_day, 0).astype("timedelta64[D]")
    wrong = np.zeros(n, dtype=bool)
    wrong[records.wrongly_reported_dead] = True
    return pa.table(
        {
            "person_ref": pa.array(population.person_ref, type=pa.string()),
            "id_number": pa.array(population.id_number, type=pa.string()),
            "name": pa.array(population.name, type=pa.string()),
            "sex": pa.array(np.where(population.male, "M", "F"), type=pa.string()),
            "birth_date": _dates(population.birth_date),
            "age_at_start": pa.array(population.age).cast(pa.string()),
            "region_code": pa.array(population.region).cast(pa.string()),
            "grid_code": pa.array(population.grid_code, type=pa.string()),
            "profile": pa.array(PROFILE_NAMES[population.profile], type=pa.string()),
            "benefit_type": pa.array(BENEFIT_TYPES[population.benefit_type], type=pa.string()),
            "monthly_amount": money_text(population.amount_cents),
            "died_on": _dates(death_date, mask=~died),
            "death_record": pa.array(records.death_record, mask=~died, type=pa.string()),
            "card_used_after_death": pa.array(np.where(used_after_death, "true", "false")),
            "wrongly_reported_dead": pa.array(np.where(wrong, "true", "false")),
            # The civil registry notified the death within a day (registry_notice).
            "registry_notice": pa.array(np.where(notified, "true", "false")),
        }
    )


def _anomalies(
    *,
    population: Population,
    planted: Planted,
    records: DeathRecords,
    defects: IdentityDefects,
    used_after_death: np.ndarray,
) -> dict[str, object]:
    """Describe everything planted, in the shape tests and demos read."""
    refs = population.person_ref
    return {
        "silent": planted.silent,
        "redelivered_files": planted.redelivered_files,
        "repeated_rows": planted.repeated_rows,
        "malformed_rows": planted.malformed,
        "wrongly_reported_dead": refs[records.wrongly_reported_dead].tolist(),
        "card_used_after_death": refs[np.flatnonzero(used_after_death)].tolist(),
        "legacy_15_digit_rows": defects.legacy_15 + records.deregistration_legacy_rows,
        "legacy_15_digit_rows_by_source": {
            "medical": defects.legacy_15,
            "deregistration": records.deregistration_legacy_rows,
        },
        "fullwidth_rows": defects.fullwidth,
        "bad_check_rows": defects.bad_check,
        "lowercase_x_rows": defects.lower_x,
        "cremation_blank_id": refs[records.cremation_id_blank].tolist(),
        "cremation_wrong_id": refs[records.cremation_id_wrong].tolist(),
        "other_deregistrations": records.other_deregistrations,
    }


def _scenarios(
    rngs: dict[str, np.random.Generator], *, population: Population, cards: Cards
) -> dict[str, Trace]:
    """Draw the data scenarios' traces, each from its own stream."""
    checks = build_health_checks(rng=rngs["health_check"], population=population)
    return {
        "travel": build_travel(rng=rngs["travel"], population=population),
        "health_check": checks,
        "community": build_community(rng=rngs["community"], population=population, cards=cards),
        "counter": build_counter(rng=rngs["counter"], population=population),
        "ltc": build_long_term_care(rng=rngs["ltc"], population=population),
        "vaccination": build_vaccinations(
            rng=rngs["vaccination"], population=population, checks=checks
        ),
        "remote_medical": build_remote_medical(rng=rngs["remote_medical"], population=population),
        "family_doctor": build_family_doctor(rng=rngs["family_doctor"], population=population),
    }


# Long by design: a linear recipe, each part of the city drawn from its own stream.
def simulate_city(
    *, persons: int, start: date, days: int, seed: int, out: Path, scenarios: bool = True
) -> SimulationSummary:
    """Simulate `persons` pensioners over `days` days from `start` and write them under `out`.

    With `scenarios`, the declared data scenarios (rail and air travel, health checks,
    community canteens and events, counters, long-term care, vaccinations, medical care out of
    the province, family doctors' follow-ups) deliver too.
    """
    if persons < 1 or days < 1:
        raise ValueError("persons and days must be positive")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rngs = _streams(seed)
    population = build_population(rngs=rngs, persons=persons, start=start, days=days)
    cards = build_cards(rng=rngs["cards"], population=population)
    transit, used_after_death = build_transit(
        rng=rngs["transit"], population=population, cards=cards
    )
    card_txn = build_card_txn(rng=rngs["card_txn"], population=population, cards=cards)
    medical, defects = build_medical(rng=rngs["medical"], population=population)
    face = build_face(rng=rngs["face"], population=population)
    records = build_death_records(rng=rngs["death_records"], population=population)

    planted = Planted()
    write_csv(
        out / "registry" / "registry.csv", _registry(rng=rngs["registry"], population=population)
    )
    write_csv(out / "cards" / "cards.csv", _cards_table(cards=cards, population=population))
    planted.files += 2
    deliveries = rngs["deliveries"]
    silent_days: set[int] = set()
    if days >= 40:
        silent_days = set(range(days - 20, days - 20 + SILENT_DAYS))
        planted.silent = {
            "source": "card_txn",
            "days": [(start + timedelta(days=d)).isoformat() for d in sorted(silent_days)],
        }
    write_daily(
        out=out,
        source="transit",
        trace=transit,
        start=start,
        days=days,
        rng=deliveries,
        planted=planted,
        resend_day=days // 2,
    )
    write_daily(
        out=out,
        source="card_txn",
        trace=card_txn,
        start=start,
        days=days,
        rng=deliveries,
        planted=planted,
        silent_days=silent_days,
        repeat_day=days // 3 if days >= 2 and days // 3 >= 1 else None,
    )
    write_monthly(
        out=out,
        source="medical",
        trace=medical,
        start=start,
        days=days,
        planted=planted,
        rng=deliveries,
        trace_source=True,
    )
    write_monthly(
        out=out,
        source="cremation",
        trace=records.cremation,
        start=start,
        days=days,
        planted=planted,
        encoding="gb18030",
    )
    write_monthly(
        out=out,
        source="deregistration",
        trace=records.deregistration,
        start=start,
        days=days,
        planted=planted,
    )
    write_monthly(out=out, source="face", trace=face, start=start, days=days, planted=planted)
    notices = build_registry_notices(
        rng=rngs["registry_notice"], population=population, records=records
    )
    write_monthly(
        out=out, source="registry_notice", trace=notices.notices, start=start, days=days,
        planted=planted,
    )  # fmt: skip
    if scenarios:
        for source, trace in _scenarios(rngs, population=population, cards=cards).items():
            # Each department's monthly export, with a few damaged rows of its own.
            write_monthly(
                out=out, source=source, trace=trace, start=start, days=days, planted=planted,
                rng=rngs[source], trace_source=True,
            )  # fmt: skip
    write_csv(
        out / "truth.csv",
        _truth(
            population=population,
            records=records,
            used_after_death=used_after_death,
            notified=notices.notified,
        ),
    )
    anomalies = _anomalies(
        population=population,
        planted=planted,
        records=records,
        defects=defects,
        used_after_death=used_after_death,
    )
    (out / "anomalies.json").write_text(
        json.dumps(anomalies, sort_keys=True, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return SimulationSummary(
        persons=persons,
        deaths=int(population.died.sum()),
        files=planted.files + 2,
        traces=planted.trace_rows,
        out=out,
    )
