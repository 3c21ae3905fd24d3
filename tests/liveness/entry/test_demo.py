"""The quick start's demo, small: it runs end to end and scores itself against the truth."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from liveness.entry.cli import app
from liveness.entry.demo import DEMO_START, _bother, demo_start, estimator_for_runs, run_demo
from liveness.services import Services
from tests.liveness.conftest import REPO, invoke_cli

# Scheduling: about 25 s a test on a quiet 2-core machine (tests/conftest.py).
pytestmark = pytest.mark.slow(seconds=25)


def test_the_demo_runs_and_keeps_its_promises(cli_env: dict[str, str], tmp_path: Path) -> None:
    code, output = invoke_cli(
        cli_env, "demo", "--persons", "600", "--days", "200", "--months", "3", "--seed", "5",
        "--out", str(tmp_path / "demo"), "--json",
    )  # fmt: skip
    assert code == 0, output
    figures = json.loads(output.splitlines()[-1])
    assert figures["runs"] == 4
    # Nobody alive is suspended for the agency's own delay, nor as dead.
    assert figures["living_suspended_while_review_overdue"] == 0
    assert figures["wrongful_suspensions"] == 0
    assert figures["dead_still_paid_at_end"] <= figures["dead_in_period"]
    assert 0 < figures["living_certified_silently_share"] <= 1


def test_the_smallest_demo_runs_without_planting_half_a_pattern(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # 100 persons over 30 days hold no death old enough to plant the integrity patterns on.
    folder = tmp_path / "demo"
    code, output = invoke_cli(
        cli_env, "demo", "--persons", "100", "--days", "30", "--months", "0", "--seed", "1",
        "--out", str(folder), "--json",
    )  # fmt: skip
    assert code == 0, output
    figures = json.loads(output.splitlines()[-1])
    assert figures["runs"] == 1
    assert figures["integrity_leads"] == []
    # Nothing of the plant was written: no planted deregistration could suspend a living host.
    assert not list((folder / "city").rglob("*_planted.csv"))
    assert not (folder / "city" / "integrity_truth.json").exists()
    assert figures["wrongful_suspensions"] == 0


def test_the_demo_measures_bother_and_switches_a_scenario_off(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in cli_env.items():
        monkeypatch.setenv(name, value)
    # In-process, with one scenario switched off: `--ablation` reruns the cycles once per
    # shipped scenario, the same code eight times.
    figures = run_demo(
        persons=600, days=200, seed=5, out=tmp_path / "demo", console=Console(quiet=True),
        months=1, json_output=True, ablation=True, ablated_scenarios=("travel",),
    )  # fmt: skip
    bother = figures["bother"]
    assert bother["reviews_per_100_persons_per_cycle"] >= 0
    assert 0 <= bother["notices_to_persons_later_certified_by_data"] <= bother["notices"]
    assert bother["grid_weeks_over_capacity"] >= 0
    row, none = figures["ablation"]
    assert (row["without"], none["without"]) == ("travel", "all")
    assert 0 < row["living_certified_silently_share"] <= figures["living_certified_silently_share"]
    assert none["living_certified_silently_share"] <= row["living_certified_silently_share"]
    assert row["wrongful_suspensions"] == none["wrongful_suspensions"] == 0
    assert none["dead_still_paid_at_end"] >= 0
    # Fresh state, without the scenario's deliveries: no travel trace in its store.
    state = tmp_path / "demo" / "ablation" / "travel"
    assert (state / "state.sqlite").exists()
    assert not list((state / "evidence").rglob("*travel*"))
    assert list((tmp_path / "demo" / "evidence").rglob("*travel*"))


def test_the_ablation_option_is_offered() -> None:
    assert "--ablation" in CliRunner().invoke(app, ["demo", "--help"]).output


def test_reviews_per_cycle_leave_out_the_first_run_s_backlog() -> None:
    """The first run's reviews and their follow-ups are the backlog's, counted apart."""
    first, second, third = dt.date(2025, 9, 30), dt.date(2025, 10, 31), dt.date(2025, 11, 30)

    def task(ref: str, kind: str, opened: dt.date) -> dict[str, object]:
        return {"grid_code": "G1", "kind": kind, "opened_on": opened, "due_on": opened,
                "closed_on": None, "person_ref": ref, "status": "done", "planned_week": None}  # fmt: skip

    tasks = pd.DataFrame([
        task("A", "face_verification", first), task("A", "home_visit", second),  # backlog
        task("B", "face_verification", first), task("B", "face_verification", third),  # new
        task("C", "face_verification", second), task("C", "home_visit", third),  # steady
        task("D", "death_review", second),  # not a review of the living
    ])  # fmt: skip
    # B was certified by face on 10-31: its review on 11-30 is a new cycle's.
    certified = pd.DataFrame({"person_ref": ["B"], "certified_on": [second], "source": ["face"]})
    # Notices: E's review certified E by face on 10-31 and the data renewed E on 11-30, a
    # cycle on (the notice did its work); F's was overtaken by the data (needless).
    notices = pd.DataFrame({"person_ref": ["E", "F"], "created_on": [first, second]})
    certified = pd.concat([certified, pd.DataFrame({
        "person_ref": ["E", "E", "F"], "certified_on": [second, third, third],
        "source": ["face", "data_comparison", "data_comparison"],
    })], ignore_index=True)  # fmt: skip
    # 60 persons on a 12-month cycle, 40 on a 6-month one: 140 cycles due in 12 months.
    cycle_months = pd.Series([12] * 60 + [6] * 40, index=[f"P{k}" for k in range(100)])
    bother = _bother(
        tasks=tasks, notices=notices, certified_on=certified, persons=100,
        runs=[first, second, third], capacity=lambda grid: 25, cycle_months=cycle_months,
    )  # fmt: skip
    assert bother["notices_to_persons_later_certified_by_data"] == 1
    assert bother["backlog_reviews"] == 3  # A twice, B's first
    assert bother["reviews_after_backlog"] == 3  # B's second, C's two
    months = (third - first).days / 30.44
    assert bother["reviews_per_100_persons_per_cycle"] == round(3 / 100 * 100 * 12 / months, 2)
    due = 60 * months / 12 + 40 * months / 6
    assert bother["person_cycles_due"] == round(due, 1)
    assert bother["reviews_per_100_person_cycles_due"] == round(3 / due * 100, 2)


@given(
    days=st.integers(min_value=30, max_value=3650),
    today=st.dates(min_value=dt.date(2025, 2, 1), max_value=dt.date(2040, 12, 31)),
)
def test_the_demo_city_ends_by_today_and_starts_as_late_as_it_can(
    days: int, today: dt.date
) -> None:
    start = demo_start(days=days, today=today)
    end = start + dt.timedelta(days=days - 1)
    assert end <= today  # a run dated after today is refused
    assert (start.month, start.day) == (1, 1)
    if DEMO_START + dt.timedelta(days=days - 1) <= today:
        assert start == DEMO_START
    else:
        later = start.replace(year=start.year + 1)
        assert later + dt.timedelta(days=days - 1) > today


def test_the_runs_estimator_knows_nothing_after_the_first_run(
    services_factory: Callable[[str], Services], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_factory("sqlite")
    first_run = dt.date(2025, 6, 30)
    # Off by default ([certify] in estimator.toml): nothing is trained for the runs.
    assert estimator_for_runs(services, first_run=first_run, console=Console(quiet=True)) is None

    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    text = (config / "estimator.toml").read_text(encoding="utf-8")
    (config / "estimator.toml").write_text(
        text.replace("\nenabled = false\n", "\nenabled = true\n"), encoding="utf-8"
    )
    enabled = Services(services.settings.model_copy(update={"config_dir": config}))
    trained: list[tuple[dt.date, int | None]] = []

    def train(_session: object, *, as_of: dt.date, **kwargs: Any) -> Any:
        trained.append((as_of, kwargs.get("horizon_days")))
        return SimpleNamespace(artifact=SimpleNamespace(version="v1"))

    monkeypatch.setattr("liveness.estimator.service.train_estimator", train)
    version = estimator_for_runs(enabled, first_run=first_run, console=Console(quiet=True))
    # Its labels (90 days from its as-of day) end at the first run, never after it.
    assert (version, trained) == ("v1", [(first_run - dt.timedelta(days=90), None)])
