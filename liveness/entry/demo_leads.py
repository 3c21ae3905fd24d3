"""Leads found per rule against what the simulator planted, for `liveness demo`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from rich.table import Table

from liveness.certification.runner import local_today
from liveness.db import session_scope
from liveness.integrity.policy import RULES, load_integrity_policy
from liveness.integrity.queries import current_leads
from liveness.integrity.service import refresh_leads
from liveness.services import Services
from liveness.simulate.integrity import PlantedIntegrity, record_planted_outcomes

DEMO_COLUMNS = ["rule", "planted", "found", "leads", "on_planted", "precision"]


def demo_leads(services: Services, *, planted: PlantedIntegrity, as_of: dt.date) -> pd.DataFrame:
    """Detect and store leads as of a day; return, per rule, planted findings found and precision.

    `found` counts planted groups all of whose persons one lead names; `on_planted` counts leads
    naming a planted person (or one the truth expects, such as someone wrongly reported dead).
    """
    policy = load_integrity_policy(services.settings.config_dir / "integrity.toml")
    with session_scope(services.sessions) as session:
        # Review outcomes are no delivery: the planted ones go straight into the database.
        record_planted_outcomes(session, planted=planted, as_of=as_of)
        refresh_leads(
            session, store=services.store, policy=policy, as_of=as_of, today=local_today(services)
        )
        leads = [(lead.rule, set(lead.person_refs)) for lead in current_leads(session)]
    rows = []
    for rule in RULES:
        named = [refs for lead_rule, refs in leads if lead_rule == rule]
        groups = planted.groups.get(rule, [])
        expected = planted.persons(rule) | set(planted.also_expected.get(rule, []))
        found = sum(any(set(group) <= refs for refs in named) for group in groups)
        on_planted = sum(bool(refs & expected) for refs in named)
        rows.append(
            {
                "rule": rule, "planted": len(groups), "found": found, "leads": len(named),
                "on_planted": on_planted,
                "precision": on_planted / len(named) if named else float("nan"),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=DEMO_COLUMNS)


def demo_table(figures: pd.DataFrame) -> Table:
    """Render `demo_leads` figures as a table for the console."""
    table = Table(title="integrity leads against the planted truth")
    for column in DEMO_COLUMNS:
        table.add_column(column, justify="left" if column == "rule" else "right")
    for row in figures.to_dict("records"):
        precision = "" if pd.isna(row["precision"]) else f"{row['precision']:.0%}"
        table.add_row(
            row["rule"], str(row["planted"]), str(row["found"]), str(row["leads"]),
            str(row["on_planted"]), precision,
        )  # fmt: skip
    return table
