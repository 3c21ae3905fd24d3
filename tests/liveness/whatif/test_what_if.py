"""`liveness what-if` on a small simulated city: fair, read only, deterministic, in the right direction."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console
from sqlalchemy import func, select

from liveness.db import session_scope
from liveness.entry.demo import run_demo
from liveness.entry.whatif import print_what_if
from liveness.lists.payment.days import months_paid_after
from liveness.services import Services
from liveness.settings import Settings
from liveness.whatif import what_if
from liveness.whatif.figures import _paid_after_death
from liveness.whatif.replay import _matching_task
from models import Base
from tests.liveness.conftest import REPO, invoke_cli

# Scheduling: about 19 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=19)

FIRST, LAST = dt.date(2025, 1, 1), dt.date(2025, 5, 30)


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the folder of a small demo city: three monthly runs with simulated answers."""
    folder = tmp_path_factory.mktemp("whatif") / "demo"
    run_demo(
        persons=300, days=150, seed=7, out=folder, console=Console(quiet=True), months=2,
        json_output=True,
    )  # fmt: skip
    return folder


def live_services(city: Path) -> Services:
    """Return services on the demo city's live state, under the shipped policy."""
    return Services(
        Settings(
            database_url=f"sqlite:///{city / 'state.sqlite'}",
            evidence_dir=city / "evidence",
            config_dir=REPO / "config",
            whatif_dir=city / "whatif",
        )
    )


def env_of(city: Path) -> dict[str, str]:
    """Return the environment of CLI invocations on the demo city's live state."""
    return {
        "LIVENESS_DATABASE_URL": f"sqlite:///{city / 'state.sqlite'}",
        "LIVENESS_EVIDENCE_DIR": str(city / "evidence"),
        "LIVENESS_CONFIG_DIR": str(REPO / "config"),
    }


def candidate(tmp_path: Path, *, recent: int) -> Path:
    """Return a copy of the shipped policy folder with scoring.toml's `recent` changed."""
    folder = tmp_path / f"recent-{recent}"
    shutil.copytree(REPO / "config", folder)
    scoring = folder / "scoring.toml"
    text = scoring.read_text(encoding="utf-8")
    assert "\nrecent = 90 " in text
    scoring.write_text(text.replace("\nrecent = 90 ", f"\nrecent = {recent} ", 1), "utf-8")
    return folder


def snapshot(services: Services, city: Path) -> dict[str, Any]:
    """Return every live table's row count and every file of the live store, with its bytes."""
    with session_scope(services.sessions) as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
    files = {
        str(path.relative_to(city)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(city.rglob("*"))
        if path.is_file() and "whatif" not in path.parts
    }
    return {"rows": counts, "files": files}


def figures(side: dict[str, Any]) -> dict[str, Any]:
    """Return a side's figures (without the log of what it replayed)."""
    return {key: value for key, value in side.items() if key != "replay"}


@pytest.fixture(scope="module")
def same_policy(city: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return the live state before and after a what-if of the live policy against itself."""
    live = live_services(city)
    before = snapshot(live, city)
    report = what_if(live, policy_dir=REPO / "config", first=FIRST, last=LAST)
    after = snapshot(live, city)
    live.engine.dispose()
    return before, after, report


def test_the_same_policy_on_both_sides_gives_the_same_figures_and_writes_nothing_live(
    city: Path, same_policy: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
) -> None:
    before, after, report = same_policy
    assert after == before
    live = live_services(city)
    assert figures(report["live"]) == figures(report["candidate"])
    assert report["overpayment_avoided"] == "0.00"
    assert report["run_dates"] == ["2025-03-31", "2025-04-30", "2025-05-30"]
    replayed = report["live"]["replay"]
    # Every delivery came back from its file; the answers people gave found their tasks.
    assert replayed["deliveries_replayed"] == report["history"]["deliveries"]
    assert replayed["deliveries_missing"] == replayed["deliveries_pulled"] == 0
    assert replayed["outcomes_applied"] > 0
    assert [run["strong"] > 0 for run in report["live"]["runs"]] == [True] * 3
    # The replay under the live policy finds what the live runs found, run by run.
    with session_scope(live.sessions) as session:
        from models import Run, RunStatus

        levels = [
            run.report["levels"]
            for run in session.scalars(
                select(Run).where(Run.status == RunStatus.PUBLISHED).order_by(Run.as_of)
            )
        ]
    assert [{k: run[k] for k in levels[0]} for run in report["live"]["runs"]] == levels


def test_a_shorter_recent_window_asks_more_faces_and_certifies_fewer_silently(
    city: Path, tmp_path: Path, same_policy: tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
) -> None:
    env = env_of(city)
    policy = candidate(tmp_path, recent=60)
    # The candidate also lets the learned estimator certify, with no artifact in the replay:
    # it certifies nobody, and the report says why instead of looking like the live policy.
    estimator = policy / "estimator.toml"
    text = estimator.read_text("utf-8")
    estimator.write_text(text.replace("\nenabled = false\n", "\nenabled = true\n", 1), "utf-8")
    code, output = invoke_cli(
        env, "what-if", "--policy", str(policy), "--from", FIRST.isoformat(), "--to",
        LAST.isoformat(), "--json",
    )  # fmt: skip
    assert code == 0, output
    report = json.loads(output.splitlines()[-1])
    live, shorter = report["live"]["totals"], report["candidate"]["totals"]
    assert shorter["face_requests"] > live["face_requests"]
    assert shorter["silent_certifications"] < live["silent_certifications"]
    first_live, first_shorter = report["live"]["runs"][0], report["candidate"]["runs"][0]
    assert first_shorter["strong"] < first_live["strong"]
    # Kept for the supervisors' page, whole.
    stored = json.loads((city / "whatif" / f"{report['id']}.json").read_text("utf-8"))
    assert {k: v for k, v in stored.items() if k != "created_at"} == report
    # Deterministic: the live side replayed again, in another scratch state, the same.
    assert figures(same_policy[2]["live"]) == figures(report["live"])
    printed = Console(record=True, width=200)
    print_what_if(report, to=printed)
    text = printed.export_text()
    assert "face requests" in text and "silent certifications" in text
    assert "330" in text  # the grids' table
    assert report["live"]["estimator_notes"] == []
    assert any("no estimator artifact" in note for note in report["candidate"]["estimator_notes"])
    assert "candidate: estimator enabled but not used" in text
    assert all(run["certified_by_estimator"] == 0 for run in report["candidate"]["runs"])


def test_a_bad_policy_folder_or_period_is_refused_with_a_clear_error(
    city: Path, tmp_path: Path
) -> None:
    env = env_of(city)
    policy = candidate(tmp_path, recent=90)
    scoring = policy / "scoring.toml"
    scoring.write_text(
        scoring.read_text("utf-8").replace("\nrecent = 90 ", '\nrecent = "ninety" ', 1), "utf-8"
    )
    period = ("--from", FIRST.isoformat(), "--to", LAST.isoformat())
    code, output = invoke_cli(env, "what-if", "--policy", str(policy), *period)
    assert code == 10, output
    assert "scoring.toml" in output and "recent" in output
    code, output = invoke_cli(env, "what-if", "--policy", str(tmp_path / "none"), *period)
    assert code == 10 and "no such policy folder" in output
    config = str(REPO / "config")
    code, output = invoke_cli(
        env, "what-if", "--policy", config, "--from", "2025-05-01", "--to", "2025-04-01"
    )
    assert code == 11 and "--from 2025-05-01 is after --to 2025-04-01" in output
    code, output = invoke_cli(
        env, "what-if", "--policy", config, "--from", "2024-01-01", "--to", "2024-12-31"
    )
    assert code == 11 and "no run in this period" in output
    code, output = invoke_cli(
        env, "what-if", "--policy", config, "--from", "2025-13-01", "--to", "2025-12-31"
    )
    assert code == 2
    # The scratch folder is new or empty: the live evidence store given as one was written
    # into (its replays' states beside the live parts), and a file failed at the second side.
    period = ("--from", LAST.isoformat(), "--to", LAST.isoformat())
    before = sorted(path.name for path in (city / "evidence").iterdir())
    code, output = invoke_cli(
        env, "what-if", "--policy", config, *period, "--scratch", str(city / "evidence")
    )
    assert code == 11 and "the folder is not empty" in output, output
    assert sorted(path.name for path in (city / "evidence").iterdir()) == before
    (tmp_path / "a-file").write_text("x", "utf-8")
    code, output = invoke_cli(
        env, "what-if", "--policy", config, *period, "--scratch", str(tmp_path / "a-file")
    )
    assert code == 11 and "not a folder" in output, output


def test_an_outcome_answers_its_person_s_open_task_that_accepts_it() -> None:
    tasks = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "kind": ["face_verification", "home_visit", "death_review", "home_visit"],
            "opened_on": [dt.date(2025, 3, 1), dt.date(2025, 3, 1), dt.date(2025, 3, 1),
                          dt.date(2025, 4, 2)],
            "person_ref": ["P1", "P1", "P2", "P3"],
        }
    )  # fmt: skip

    def match(ref: str, kind: str, outcome: str, *, taken: frozenset[int] = frozenset()) -> Any:
        return _matching_task(
            tasks, person_ref=ref, kind=kind, outcome=outcome, on=dt.date(2025, 4, 1),
            taken=set(taken),
        )  # fmt: skip

    assert match("P1", "home_visit", "alive_confirmed") == 2
    assert match("P1", "face_verification", "face_passed") == 1
    # A visit's outcome on a person the replay gave a death review answers that review.
    assert match("P2", "home_visit", "deceased") == 3
    assert match("P2", "home_visit", "moved_away") is None
    # A task opened after the outcome was recorded, or one already answered, is not its.
    assert match("P3", "home_visit", "alive_confirmed") is None
    assert match("P1", "home_visit", "alive_confirmed", taken=frozenset({2})) is None
    assert match("P9", "home_visit", "alive_confirmed") is None


def test_what_was_paid_after_each_death_to_the_fen() -> None:
    last, payment_day = dt.date(2025, 6, 30), 5
    deaths = pd.DataFrame(
        {
            "person_id": [1, 2, 2, 3, 4],
            "died_on": [dt.date(2025, 1, 20), dt.date(2025, 2, 3), dt.date(2025, 2, 27),
                        dt.date(2025, 6, 1), dt.date(2025, 3, 31)],
        }
    )  # fmt: skip
    entries = pd.DataFrame(
        {
            "person_id": [1, 1, 3],
            "run_id": [1, 2, 1],
            "action": ["suspend", "suspend", "suspend"],
            "as_of": [dt.date(2025, 4, 4), dt.date(2025, 5, 31), dt.date(2025, 1, 31)],
        }
    )
    benefits = pd.DataFrame(
        {
            "person_id": [1, 2, 2, 4],
            "monthly_amount": [Decimal("1234.56"), Decimal("800.10"), Decimal("99.99"),
                               Decimal("3000.01")],
        }
    )  # fmt: skip
    # Independently: each person's earliest death, paid until the first suspension or the end.
    expected = (
        months_paid_after(died_on=dt.date(2025, 1, 20), as_of=dt.date(2025, 4, 4),
                          payment_day=payment_day) * Decimal("1234.56")
        + months_paid_after(died_on=dt.date(2025, 2, 3), as_of=last, payment_day=payment_day)
        * (Decimal("800.10") + Decimal("99.99"))
        + months_paid_after(died_on=dt.date(2025, 3, 31), as_of=last, payment_day=payment_day)
        * Decimal("3000.01")
    )  # fmt: skip
    paid = _paid_after_death(
        deaths, entries=entries, benefits=benefits, last=last, payment_day=payment_day
    )
    assert paid == expected == Decimal("2469.12") + 4 * Decimal("900.09") + 3 * Decimal("3000.01")
