"""`liveness leads` and `liveness orders`: integrity leads and the inspection orders built on them.

Registered in liveness/entry/cli/__init__.py:
    app.command("leads")(boundary(leads_command))
    app.add_typer(orders_app, name="orders")
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from liveness.entry.cli.boundary import (
    DAYS_MOST,
    LARGEST,
    actor_name,
    boundary,
    migrated_services,
    print_json,
)

if TYPE_CHECKING:
    from liveness.integrity.policy import IntegrityPolicy
    from liveness.services import Services
    from models import IntegrityLead

__all__ = ["leads_command", "orders_app"]

# liveness.integrity.policy.RULES, repeated: `--rule`'s help needs them when the command line
# is built, and importing the integrity package loads its service and pandas with it
# (tests/liveness/integrity/test_cli.py checks that the two agree).
RULES = (
    "shared_bank_account",
    "shared_phone",
    "deregistered_number",
    "same_demographics",
    "activity_after_death",
    "face_pass_after_death",
    "same_face_id",
    "two_region_certification",
)
# models.LeadVerdict's values, repeated for the same reason: `models` loads SQLAlchemy.
VerdictName = Literal["confirmed", "explained", "data_error"]

orders_app = typer.Typer(
    no_args_is_help=True, help="Inspection orders (检查订单): leads per region, answers, reviews."
)
console = Console()


def integrity_policy(services: Services) -> IntegrityPolicy:
    """Return the integrity policy of a process's configuration folder."""
    from liveness.integrity.policy import load_integrity_policy

    return load_integrity_policy(services.settings.config_dir / "integrity.toml")


def lead_record(lead: IntegrityLead) -> dict[str, Any]:
    """Return a lead as a JSON-ready object: the rule, the persons involved and the evidence."""
    return {
        "lead_id": lead.id, "rule": lead.rule, "status": str(lead.status),
        "region_code": lead.region_code, "person_refs": list(lead.person_refs),
        "amount_at_risk": None if lead.amount_at_risk is None else str(lead.amount_at_risk),
        "order_id": lead.order_id, "found_on": lead.found_on.isoformat(),
        "policy_version": lead.policy_version, "evidence": lead.evidence,
    }  # fmt: skip


def leads_command(
    rule: Annotated[str | None, typer.Option(help=f"Only this rule: {', '.join(RULES)}.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per line, with the evidence.")
    ] = False,
    as_of: Annotated[
        dt.datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Detect as of this day (default: today)."),
    ] = None,
) -> None:
    """Run the integrity rules, store what they find, and list the current leads."""
    from liveness.db import session_scope
    from liveness.entry.jobs import local_today
    from liveness.integrity.queries import current_leads
    from liveness.integrity.service import refresh_leads

    if rule is not None and rule not in RULES:
        raise typer.BadParameter(
            f"{rule!r} is not a rule; expected one of {', '.join(RULES)}", param_hint="'--rule'"
        )
    services = migrated_services()
    policy = integrity_policy(services)
    day = as_of.date() if as_of is not None else local_today(services)
    with session_scope(services.sessions) as session:
        report = refresh_leads(
            session, store=services.store, policy=policy, as_of=day, today=local_today(services)
        )
        leads = [lead_record(lead) for lead in current_leads(session, rule=rule)]
    if json_output:
        for record in leads:
            print_json(record, sort_keys=True)
        return
    table = Table(title=f"integrity leads as of {day} ({len(leads)}; {report.new} new)")
    for column in ("id", "rule", "region", "persons", "at risk / month", "status", "order"):
        table.add_column(column)
    for record in leads:
        table.add_row(
            str(record["lead_id"]), record["rule"], record["region_code"],
            ", ".join(record["person_refs"]), record["amount_at_risk"] or "", record["status"],
            "" if record["order_id"] is None else str(record["order_id"]),
        )  # fmt: skip
    console.print(table)


@orders_app.command("create")
@boundary
def create_command(
    by: Annotated[
        str,
        typer.Option(callback=actor_name, help="Who issues the orders (kept in the audit log)."),
    ],
    due_days: Annotated[
        int | None,
        typer.Option(min=1, max=DAYS_MOST, help="Days to answer (default: the policy's)."),
    ] = None,
    rule: Annotated[str | None, typer.Option(help="Only leads of this rule.")] = None,
    region: Annotated[list[str] | None, typer.Option(help="Only this region (repeatable).")] = None,
) -> None:
    """Package every open lead into one order per region, due in `due_days`."""
    from liveness.db import session_scope
    from liveness.entry.jobs import local_today
    from liveness.integrity.service import create_orders

    services = migrated_services()
    days = due_days or int(integrity_policy(services).get("orders", "due_days"))
    due_on = local_today(services) + dt.timedelta(days=days)
    with session_scope(services.sessions) as session:
        orders = create_orders(session, due_on=due_on, issued_by=by, rule=rule, regions=region)
        created = [(order.id, order.region_code) for order in orders]
    for order_id, region_code in created:
        console.print(f"order {order_id}: region {region_code}, due {due_on}", highlight=False)
    console.print(f"{len(created)} orders created", highlight=False)


@orders_app.command("list")
@boundary
def list_command(
    region: Annotated[list[str] | None, typer.Option(help="Only this region (repeatable).")] = None,
) -> None:
    """List inspection orders with their status and due date."""
    from liveness.db import session_scope
    from liveness.integrity.queries import list_orders

    with session_scope(migrated_services().sessions) as session:
        orders = [
            (o.id, o.region_code, str(o.status), o.due_on, o.issued_by)
            for o in list_orders(session, regions=region)
        ]
    table = Table(title=f"inspection orders ({len(orders)})")
    for column in ("id", "region", "status", "due", "issued by"):
        table.add_column(column)
    for order_id, region_code, status, due_on, issued_by in orders:
        table.add_row(str(order_id), region_code, status, str(due_on), issued_by)
    console.print(table)


@orders_app.command("show")
@boundary
def show_command(
    order_id: Annotated[int, typer.Argument(min=1, max=LARGEST, help="The order.")],
) -> None:
    """Print an order's leads, one JSON object per line."""
    from liveness.db import session_scope
    from liveness.integrity.queries import order_leads

    with session_scope(migrated_services().sessions) as session:
        _, leads = order_leads(session, order_id=order_id)
        records = [lead_record(lead) for lead in leads]
    for record in records:
        print_json(record, sort_keys=True)


@orders_app.command("answer")
@boundary
def answer_command(
    lead_id: Annotated[int, typer.Argument(min=1, max=LARGEST, help="The lead answered.")],
    verdict: Annotated[VerdictName, typer.Option(help="What the inspection found.")],
    by: Annotated[str, typer.Option(callback=actor_name, help="The inspector answering.")],
    amount: Annotated[str, typer.Option(help="Amount to recover, in yuan.")] = "0",
    note: Annotated[str | None, typer.Option(help="What was found.")] = None,
) -> None:
    """Answer one lead of an order: confirmed, explained or data_error."""
    from liveness.db import session_scope
    from liveness.integrity.service import answer_lead, parse_yuan
    from models import LeadVerdict

    with session_scope(migrated_services().sessions) as session:
        answer_lead(
            session, lead_id=lead_id, verdict=LeadVerdict(verdict),
            amount_to_recover=parse_yuan(amount), answered_by=by, note=note,
        )  # fmt: skip
    console.print(f"lead {lead_id} answered: {verdict}", highlight=False)


@orders_app.command("review")
@boundary
def review_command(
    lead_id: Annotated[
        int, typer.Argument(min=1, max=LARGEST, help="The lead whose answer is reviewed.")
    ],
    by: Annotated[
        str, typer.Option(callback=actor_name, help="The reviewer at the issuing level.")
    ],
    accept: Annotated[
        bool, typer.Option("--accept/--return", help="Accept the answer, or return it.")
    ] = True,
    reason: Annotated[
        str | None, typer.Option(help="Why the answer is returned (required with --return).")
    ] = None,
) -> None:
    """Accept an answer (the lead closes) or return it to the region, saying why."""
    from liveness.db import session_scope
    from liveness.integrity.service import review_answer

    with session_scope(migrated_services().sessions) as session:
        review_answer(session, lead_id=lead_id, accept=accept, reviewed_by=by, reason=reason)
    console.print(f"lead {lead_id}: answer {'accepted' if accept else 'returned'}", highlight=False)


@orders_app.command("precision")
@boundary
def precision_command(
    monthly: Annotated[bool, typer.Option("--monthly", help="One row per rule and month.")] = False,
) -> None:
    """Show each rule's precision (share of reviewed leads confirmed) and amounts recovered."""
    from liveness.db import session_scope
    from liveness.integrity.queries import rule_precision

    with session_scope(migrated_services().sessions) as session:
        frame = rule_precision(session, by_month=monthly)
    table = Table(title="rule precision")
    columns = ["rule", *(["month"] if monthly else []), "reviewed", "confirmed", "explained",
               "data_error", "precision", "recovered"]  # fmt: skip
    for column in columns:
        table.add_column(column)
    for row in frame.to_dict("records"):
        table.add_row(
            *(f"{row[c]:.0%}" if c == "precision" else f"{row[c]:.2f}" if c == "recovered"
              else str(row[c]) for c in columns)
        )  # fmt: skip
    console.print(table)
