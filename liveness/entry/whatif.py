"""`liveness what-if`'s report as a supervisor reads it: both policies side by side."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_what_if"]


def _change(live: object, candidate: object) -> str:
    """Return the candidate's change against the live policy, signed ('' if not a number)."""
    if isinstance(live, int) and isinstance(candidate, int):
        return f"{candidate - live:+,}" if candidate != live else "="
    if isinstance(live, Decimal) and isinstance(candidate, Decimal):
        delta = candidate - live
        return f"{delta:+,.2f}" if delta else "="
    if isinstance(live, float) and isinstance(candidate, float):
        return f"{candidate - live:+.1f}" if candidate != live else "="
    return ""


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return f"{value}"


def comparison_rows(report: dict[str, Any]) -> list[tuple[str, object, object]]:
    """Return the report's figures as (label, live, candidate) rows, in reading order."""
    live, candidate = report["live"], report["candidate"]
    rows: list[tuple[str, object, object]] = []
    for before, after in zip(live["runs"], candidate["runs"], strict=True):
        levels = ("strong", "medium", "weak", "deceased")
        rows.append((f"run {before['as_of']}: strong / medium / weak / deceased",
                     " / ".join(f"{before[k]:,}" for k in levels),
                     " / ".join(f"{after[k]:,}" for k in levels)))  # fmt: skip
        for key, label in (
            ("face_requests", "face requests"),
            ("home_visits", "home visits"),
            ("silent_certifications", "silent certifications"),
            ("certified_by_estimator", "  of them by the learned estimator"),
            ("suspensions", "suspensions"),
        ):
            # .get: reports saved before a figure was added still open.
            rows.append((f"  {label}", before.get(key, 0), after.get(key, 0)))
    for key, label in (
        ("face_requests", "face requests"),
        ("home_visits", "home visits"),
        ("death_reviews", "death reviews"),
        ("unanswered", "reviews nothing in the history answered"),
        ("silent_certifications", "silent certifications"),
        ("suspensions", "suspensions"),
        ("reinstatements", "reinstatements"),
    ):
        rows.append((f"period: {label}", live["totals"][key], candidate["totals"][key]))
    for key, label in (
        ("matched", "deaths (matched death records)"),
        ("caught", "  suspended"),
        ("after_first_run_caught", "  died after the first run, suspended"),
        ("median_days", "  days from death to suspension, median"),
        ("p95_days", "  days from death to suspension, p95"),
    ):
        rows.append((label, live["deaths"][key], candidate["deaths"][key]))
    rows.append(("suspended, later proved alive", live["suspended_then_proved_alive"],
                 candidate["suspended_then_proved_alive"]))  # fmt: skip
    rows.append(("paid after death", Decimal(live["paid_after_death"]),
                 Decimal(candidate["paid_after_death"])))  # fmt: skip
    return rows


def print_what_if(report: dict[str, Any], *, to: Console) -> None:
    """Print a what-if report: the figures side by side, then each grid's reviews."""
    period = report["period"]
    table = Table(
        title=f"what-if {period['from']} .. {period['to']}: "
        f"{report['policies']['candidate']['folder']} beside the live policy"
    )
    for title, justify in (("figure", "left"), ("live policy", "right"),
                           ("candidate", "right"), ("change", "right")):  # fmt: skip
        table.add_column(title, justify=justify)  # type: ignore[arg-type]
    for label, live, candidate in comparison_rows(report):
        table.add_row(label, _cell(live), _cell(candidate), _change(live, candidate))
    table.add_row(
        "overpayment avoided (live paid after death - candidate)", "",
        _cell(Decimal(report["overpayment_avoided"])), "",
    )  # fmt: skip
    to.print(table)
    grids = Table(title="reviews per grid over the period: face requests, home visits")
    for title in ("grid", "face live", "face candidate", "visits live", "visits candidate"):
        grids.add_column(title, justify="left" if title == "grid" else "right")
    live, candidate = report["live"]["grids"], report["candidate"]["grids"]
    empty = {"face_requests": 0, "home_visits": 0}
    for grid in sorted(set(live) | set(candidate)):
        before, after = live.get(grid, empty), candidate.get(grid, empty)
        grids.add_row(grid, f"{before['face_requests']:,}", f"{after['face_requests']:,}",
                      f"{before['home_visits']:,}", f"{after['home_visits']:,}")  # fmt: skip
    to.print(grids)
    for side in ("live", "candidate"):
        for note in report[side].get("estimator_notes", []):
            to.print(f"{side}: {note}", highlight=False)
        replayed = report[side]["replay"]
        skipped = {
            key: replayed[key]
            for key in ("deliveries_pulled", "deliveries_missing", "deliveries_unconfigured")
            if replayed[key]
        }
        to.print(
            f"{side}: {replayed['deliveries_replayed']:,} deliveries replayed, "
            f"{replayed['outcomes_applied']:,} recorded outcomes applied, "
            f"{replayed['outcomes_without_task']:,} for reviews this policy never opened"
            + (f"; not replayed: {skipped}" if skipped else "")
            + (
                f"; the guard would have stopped {', '.join(replayed['stopped_by_guard'])}"
                if replayed["stopped_by_guard"]
                else ""
            ),
            highlight=False,
        )
