"""A run's report as an operator reads it: printed by `liveness run` and by `liveness demo`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["estimator_effect", "print_run_report"]


def estimator_effect(report: dict[str, Any]) -> str:
    """Say in one line what the learned estimator certified beside the rules, in a run."""
    by_estimator = report.get("certified_by_estimator", 0)
    by_rules = report["certified_silently"] - by_estimator
    estimator = report.get("estimator", {})
    if not estimator.get("enabled"):
        return f"certified silently: {by_rules:,} by the rules; the estimator is not enabled"
    if estimator.get("artifact") is None:
        notes = "; ".join(estimator.get("notes", []))
        return f"certified silently: {by_rules:,} by the rules; {notes}"
    return (
        f"certified silently: {by_rules:,} by the rules, {by_estimator:,} more by the estimator "
        f"(artifact {estimator['artifact']}: {estimator.get('above_min_probability', 0):,} "
        f"likely alive, {estimator.get('without_own_body_trace', 0):,} of them without a "
        "recent trace of their own body)"
    )


def print_run_report(report: dict[str, Any], *, to: Console) -> None:
    """Print a run's report for an operator."""
    table = Table(title=f"certification run as of {report['as_of']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("persons graded", f"{report['persons']:,}")
    for level, count in report["levels"].items():
        table.add_row(f"  {level}", f"{count:,}")
    table.add_row("certified silently", f"{report['certified_silently']:,}")
    if report.get("estimator", {}).get("enabled"):
        table.add_row("  of them by the estimator", f"{report['certified_by_estimator']:,}")
        for note in report["estimator"].get("notes", []):
            table.add_row("[yellow]estimator[/]", note)
    for kind, count in report["tasks_opened"].items():
        table.add_row(f"tasks opened: {kind}", f"{count:,}")
    risk = report.get("risk_reviews", {})
    if risk.get("opened"):
        table.add_row(
            "  of them early, for a risk",
            f"{risk['opened']:,} (traces stopped: {risk['abrupt_stop']:,}, "
            f"low P(alive): {risk['low_probability']:,})",
        )
    table.add_row("tasks closed by data", f"{report['tasks_closed_by_data']:,}")
    table.add_row("suspensions", f"{report['suspensions']:,}")
    for event, count in report.get("payment_events", {}).items():
        if count:
            table.add_row(f"  payment event: {event}", f"{count:,}")
    for why, count in report.get("lapse_waiting", {}).items():
        if count:
            table.add_row(f"lapsed, not suspended: {why.replace('_', ' ')}", f"{count:,}")
    overdue = report.get("overdue_reviews", {})
    if overdue.get("total"):
        oldest = overdue["grids"][0]
        table.add_row(
            "[yellow]overdue reviews (the agency's delay)[/]",
            f"{overdue['total']:,} in {overdue['grids_behind']:,} grids, oldest due "
            f"{oldest['oldest_due_on']} ({oldest['grid_code']})",
        )
    table.add_row("overpayment to recover (yuan)", report["overpayment_total"])
    table.add_row(
        "persons with traces after death", f"{report['persons_with_traces_after_death']:,}"
    )
    for source, days in report["degraded_sources"].items():
        table.add_row(f"degraded source: {source}", f"{len(days)} days, last {days[-1]}")
    for source, pending in report.get("not_yet_due", {}).items():
        span = f"{pending['days']} days, {pending['first']} to {pending['last']}"
        table.add_row(f"not yet due: {source}", span)
    if report.get("kept_by_credit"):
        table.add_row("kept at their level by a degraded source", f"{report['kept_by_credit']:,}")
    guard = report.get("guard", {})
    if guard.get("previous_run_id") is not None:
        table.add_row(
            "lowered since the previous run",
            f"{guard['downgraded']:,} ({guard['downgrade_share']:.2%})"
            + (" [red]guard overridden[/]" if guard.get("overridden") else ""),
        )
    ranges = report.get("ranges")
    if ranges:
        table.add_row("run by ranges", f"{ranges['count']:,} of {ranges['persons']:,} person ids")
    table.add_row("policy version", report["policy_version"])
    to.print(table)
