"""`liveness leads` and `liveness orders` through the command line, without a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import get_args

import pytest
import typer
from typer.testing import CliRunner

from liveness.entry.cli import boundary
from liveness.entry.cli import integrity as cli_integrity
from liveness.entry.cli.integrity import VerdictName, leads_command, orders_app
from liveness.integrity.policy import RULES
from liveness.settings import get_settings
from models import LeadVerdict
from tests.liveness.integrity.conftest import AS_OF, PlantedCity

runner = CliRunner()
app = typer.Typer(pretty_exceptions_enable=False)
# Registered as liveness/entry/cli/__init__.py does.
app.command("leads")(boundary(leads_command))
app.add_typer(orders_app, name="orders")


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Read the settings from each invocation's environment, not from an earlier test's."""
    # `get_settings` is cached per process: whatever test of this worker read it first
    # (without these variables) would otherwise point the commands at another database.
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _env(city: PlantedCity) -> dict[str, str]:
    settings = city.services.settings
    return {
        "LIVENESS_DATABASE_URL": settings.database_url,
        "LIVENESS_EVIDENCE_DIR": str(settings.evidence_dir),
        "LIVENESS_CONFIG_DIR": str(settings.config_dir),
        "COLUMNS": "200",
    }


def test_leads_json_orders_and_precision(
    planted_city: PlantedCity, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command's console took its width when the module was imported, wherever that was
    # (an xdist worker has no terminal): wide enough for the rule names whatever it was.
    monkeypatch.setattr(cli_integrity.console, "_width", 200)
    env = _env(planted_city)
    result = runner.invoke(app, ["leads", "--json", "--as-of", AS_OF.isoformat()], env=env)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert {"rule", "person_refs", "evidence"} <= set(records[0])
    bank = [r for r in records if r["rule"] == "shared_bank_account"]
    assert bank and set(planted_city.planted.groups["shared_bank_account"][0]) <= set(
        bank[0]["person_refs"]
    )

    only = runner.invoke(app, ["leads", "--rule", "shared_phone", "--as-of", AS_OF.isoformat()],
                         env=env)  # fmt: skip
    assert only.exit_code == 0 and "shared_phone" in only.output
    assert "shared_bank_account" not in only.output
    wrong = runner.invoke(app, ["leads", "--rule", "weather"], env=env)
    assert wrong.exit_code != 0 and "Traceback" not in wrong.output

    created = runner.invoke(app, ["orders", "create", "--by", "city"], env=env)
    assert created.exit_code == 0, created.output
    lead_id = str(bank[0]["lead_id"])
    # What is no sum of money to the fen is refused, naming the field, never a traceback.
    for amount, words in (
        ("abc", "is not an amount in yuan"), ("NaN", "is not an amount in yuan"),
        ("Infinity", "is not an amount in yuan"), ("12,5", "is not an amount in yuan"),
        ("0.001", "not to the fen"), ("1e30", "is more than 9999999999.99"),
        ("-5", "must not be negative"),
    ):  # fmt: skip
        refused = runner.invoke(
            app, ["orders", "answer", lead_id, "--verdict", "confirmed", "--by", "insp",
                  "--amount", amount], env=env,
        )  # fmt: skip
        assert refused.exit_code == 11, (amount, refused.output)
        assert "amount_to_recover: " in refused.output and words in refused.output, amount
    answered = runner.invoke(
        app, ["orders", "answer", lead_id, "--verdict", "confirmed", "--by", "insp",
              "--amount", "500"], env=env,
    )  # fmt: skip
    assert answered.exit_code == 0, answered.output
    same = runner.invoke(app, ["orders", "review", lead_id, "--by", "insp"], env=env)
    assert same.exit_code == 8 and "Traceback" not in same.output
    reviewed = runner.invoke(app, ["orders", "review", lead_id, "--by", "city"], env=env)
    assert reviewed.exit_code == 0, reviewed.output
    precision = runner.invoke(app, ["orders", "precision"], env=env)
    assert precision.exit_code == 0 and "shared_bank_account" in precision.output
    listed = runner.invoke(app, ["orders", "list"], env=env)
    assert listed.exit_code == 0 and "city" in listed.output


def test_the_command_line_names_the_rules_of_the_policy() -> None:
    # The command line repeats the rule names so that it starts without the integrity package.
    assert cli_integrity.RULES == RULES


def test_the_command_line_offers_every_verdict() -> None:
    assert get_args(VerdictName) == tuple(LeadVerdict)
