"""`liveness demo --ablation`: the same city and cycles with each data scenario switched off."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from liveness.entry.demo import cycle_figures, demo_services, ingest_city, run_cycles
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
        services = demo_services(folder / scenario)
        upgrade(services.engine)
        ingest_city(services, city, skip=skip)
        compact_store(services.sessions, store=services.store)
        run_cycles(
            services, truth=truth, ends=ends, seed=seed, inbox=folder / scenario / "answers",
            console=Console(quiet=True),
            elapsed=lambda: f"({time.perf_counter() - started:.1f} s)",
        )  # fmt: skip
        figures = cycle_figures(services, truth=truth, since=ends[0], end=last_day)
        rows.append({"without": scenario, **headline(figures)})
        services.engine.dispose()
        console.print(f"   without {scenario} ({time.perf_counter() - started:.1f} s)")
    return rows


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
