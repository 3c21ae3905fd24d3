"""The demo's reruns: the same city and cycles with a source switched off.

`liveness demo --ablation` switches each data scenario off in turn; every demo switches the
civil registry's death notices off once, to measure what its feed gains.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from liveness.entry.demo import (
    cycle_figures,
    demo_services,
    estimator_for_runs,
    ingest_city,
    run_cycles,
)
from liveness.evidence.compaction import compact_store
from liveness.migrate import upgrade


def ablation(
    *, city: Path, folder: Path, truth: pd.DataFrame, ends: list[dt.date], last_day: dt.date,
    seed: int, console: Console, scenarios: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Rerun the cycles on fresh state once per delivered scenario, without that scenario.

    `scenarios` limits the reruns to those named (default: every shipped one); a last rerun
    switches every delivered scenario off at once (`without` "all": the built-in sources
    alone, the comparison with the engine before the scenarios).

    The simulated city is the same (its files, its truth); only the scenarios' deliveries
    are not ingested. Returns one row per rerun, with the figures the issue measures: the
    silent share, reviews, needless notices, deaths found without a record, the dead still
    paid at the end.
    """
    from liveness.simulate.city import SCENARIOS

    rows = []
    started = time.perf_counter()
    delivered = [s for s in SCENARIOS if (city / s).is_dir()]
    chosen = [s for s in (SCENARIOS if scenarios is None else scenarios) if s in delivered]
    reruns = [(s, frozenset({s})) for s in chosen] + [("all", frozenset(delivered))]
    for scenario, skip in reruns:
        figures = rerun(
            city=city, folder=folder / scenario, skip=skip, truth=truth, ends=ends,
            last_day=last_day, seed=seed,
        )[0]  # fmt: skip
        rows.append({"without": scenario, **headline(figures)})
        console.print(f"   without {scenario} ({time.perf_counter() - started:.1f} s)")
    return rows


def rerun(
    *, city: Path, folder: Path, skip: frozenset[str], truth: pd.DataFrame, ends: list[dt.date],
    last_day: dt.date, seed: int, since: tuple[dt.date, ...] = (),
) -> list[dict[str, Any]]:  # fmt: skip
    """Run the cycles on fresh state in `folder`, the city's deliveries but `skip` ingested.

    Return the cycles' figures (`cycle_figures`) from the first run, then from each of `since`.
    """
    services = demo_services(folder)
    try:
        upgrade(services.engine)
        ingest_city(services, city, skip=skip)
        compact_store(services.sessions, store=services.store)
        # Where the policy lets the estimator certify, it learns from this state's data too.
        estimator_for_runs(services, first_run=ends[0], console=Console(quiet=True))
        run_cycles(
            services, truth=truth, ends=ends, seed=seed, inbox=folder / "answers",
            console=Console(quiet=True), elapsed=lambda: "",
        )  # fmt: skip
        return [
            cycle_figures(services, truth=truth, since=day, end=last_day)
            for day in (ends[0], *since)
        ]
    finally:
        services.engine.dispose()


def _delays(figures: dict[str, Any]) -> dict[str, Any]:
    """Return the days from death to suspension of every death, and of the notified ones."""
    spread = figures["death_to_suspension"]
    return {"all": spread["all"], "notified_by_registry": spread["notified_by_registry"]}


def feed_comparison(
    *, city: Path, folder: Path, truth: pd.DataFrame, ends: list[dt.date], last_day: dt.date,
    seed: int, figures: dict[str, Any], nightly: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Measure the days from death to suspension with the registry's feed and without it.

    `figures` are the demo's own cycles (with the feed); the same cycles run again on fresh
    state without the `registry_notice` deliveries. The runs' cadence bounds the gain: a
    notice a day after the death waits for the next run all the same. With `nightly` (and a
    month before the last run), the last month runs nightly instead, with and without the
    feed, and the deaths of that month are measured.
    """
    from liveness.ingest.notices import NOTICE_SOURCE

    without = frozenset({NOTICE_SOURCE})
    monthly = rerun(
        city=city, folder=folder / "monthly", skip=without, truth=truth, ends=ends,
        last_day=last_day, seed=seed,
    )[0]  # fmt: skip
    result: dict[str, Any] = {
        "cadence": "monthly",
        "runs": len(ends),
        "with_feed": _delays(figures),
        "without_feed": _delays(monthly),
        "wrongful_suspensions": {
            "with_feed": figures["wrongful_suspensions"],
            "without_feed": monthly["wrongful_suspensions"],
        },
        "last_month_nightly": None,
    }
    if nightly and len(ends) >= 2:
        month = ends[-2]
        nights = [month + dt.timedelta(days=d) for d in range(1, (last_day - month).days + 1)]
        daily = [*ends[:-1], *nights]
        measured = {}
        for name, skip in (("with_feed", frozenset[str]()), ("without_feed", without)):
            measured[name] = _delays(
                rerun(
                    city=city, folder=folder / f"nightly_{name}", skip=skip, truth=truth,
                    ends=daily, last_day=last_day, seed=seed, since=(month,),
                )[1]
            )  # fmt: skip
        result["last_month_nightly"] = {"deaths_after": month.isoformat(), "runs": len(nights),
                                        **measured}  # fmt: skip
    return result


def feed_table(feed: dict[str, Any]) -> Table:
    """Return the days from death to suspension with and without the registry's feed."""
    table = Table(title="days from death to suspension, with and without the registry's feed")
    for title in ("runs", "deaths", "with the feed", "without it"):
        table.add_column(title, justify="left" if title != "with the feed" else "right")

    def cell(spread: dict[str, Any]) -> str:
        if not spread["suspended"]:
            return "-"
        return f"median {spread['median_days']:.0f} d (n {spread['suspended']:,})"

    rows = [(f"monthly ({feed['runs']})", feed)]
    if feed["last_month_nightly"] is not None:
        rows.append(("last month nightly", feed["last_month_nightly"]))
    for label, part in rows:
        for deaths, key in (("all", "all"), ("notified", "notified_by_registry")):
            table.add_row(
                label, deaths, cell(part["with_feed"][key]), cell(part["without_feed"][key])
            )
    return table


def headline(figures: dict[str, Any]) -> dict[str, Any]:
    """Return the figures an ablation row compares, from `cycle_figures`."""
    bother = figures["bother"]
    without_record = figures["death_to_suspension"]["without_death_record"]
    return {
        "living_certified_silently_share": figures["living_certified_silently_share"],
        "reviews_per_100_persons_per_cycle": bother["reviews_per_100_persons_per_cycle"],
        "notices_to_persons_later_certified_by_data_share": bother[
            "notices_to_persons_later_certified_by_data_share"
        ],
        "deaths_without_record_suspended": without_record["suspended"],
        "deaths_without_record_median_days": without_record["median_days"],
        "wrongful_suspensions": figures["wrongful_suspensions"],
        "living_suspended_after_failed_review": figures["living_suspended_after_failed_review"],
        "dead_still_paid_at_end": figures["dead_still_paid_at_end"],
    }


def ablation_table(everything: dict[str, Any], rows: list[dict[str, Any]]) -> Table:
    """Return the ablation as a table: every scenario on, then each switched off in turn."""
    table = Table(title="each data scenario switched off in turn, then all of them")
    columns = (
        ("scenarios", None),
        ("silent share", "living_certified_silently_share"),
        ("reviews / 100 / cycle", "reviews_per_100_persons_per_cycle"),
        ("needless notices", "notices_to_persons_later_certified_by_data_share"),
        ("deaths w/o record found", "deaths_without_record_suspended"),
        ("wrongly suspended", "wrongful_suspensions"),
        ("lapsed living", "living_suspended_after_failed_review"),
        ("dead paid at end", "dead_still_paid_at_end"),
    )
    for title, _ in columns:
        table.add_column(title, justify="left" if _ is None else "right")

    def cells(name: str, row: dict[str, Any]) -> list[str]:
        values = [name]
        for _, key in columns[1:]:
            value = row[key]
            share = key is not None and key.endswith("share")
            values.append(f"{value:.1%}" if share else f"{value}")
        return values

    table.add_row(*cells("all", everything))
    for row in rows:
        table.add_row(*cells(f"without {row['without']}", row))
    return table
