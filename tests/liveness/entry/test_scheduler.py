"""The nightly schedule: its config, its stored job, the retrying wrapper, and the command."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import ref_to_obj
from sqlalchemy import create_engine, func, inspect, select, table, text

from liveness.certification.runner import RunDateRefused
from liveness.entry import scheduler as scheduler_module
from liveness.entry.jobs import NightlyResult
from liveness.entry.scheduler import (
    JOB_ID,
    JOBS_TABLE,
    NOTICE_JOB_ID,
    SchedulePolicy,
    build_scheduler,
    load_schedule_policy,
    run_nightly,
)
from liveness.errors import ConfigurationError, RollMissing, RunRefused
from liveness.ingest import DeliveryReport
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from models import DeathRecord
from tests.liveness.conftest import REPO, invoke_cli

SHANGHAI = ZoneInfo("Asia/Shanghai")
VALID = """
[nightly]
cron = "30 1 * * *"
misfire_grace_time_s = 3600
coalesce = true
retry_attempts = 2
retry_delay_s = 60
"""
POLICY = SchedulePolicy(
    cron="30 1 * * *", misfire_grace_time_s=3600, coalesce=True, retry_attempts=2, retry_delay_s=60
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedule.toml"
    path.write_text(text)
    return path


def test_the_shipped_schedule_loads() -> None:
    policy = load_schedule_policy(REPO / "config" / "schedule.toml")
    assert policy.cron == "30 1 * * *" and policy.coalesce
    assert policy.attempts == policy.retry_attempts + 1


def test_a_valid_schedule_loads(tmp_path: Path) -> None:
    assert load_schedule_policy(write(tmp_path, VALID)) == POLICY


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('cron = "30 1 * * *"', 'cron = "30 25 * * *"', "nightly.cron"),
        ('cron = "30 1 * * *"', 'cron = "30 1 * *"', "nightly.cron"),
        ('cron = "30 1 * * *"', "cron = 130", "nightly.cron"),
        ("misfire_grace_time_s = 3600", "misfire_grace_time_s = 0", "nightly.misfire_grace_time_s"),
        ("misfire_grace_time_s = 3600", "", "nightly.misfire_grace_time_s"),
        ("coalesce = true", 'coalesce = "yes"', "nightly.coalesce"),
        ("retry_attempts = 2", "retry_attempts = -1", "nightly.retry_attempts"),
        ("retry_attempts = 2", "retry_attempts = true", "nightly.retry_attempts"),
        ("retry_delay_s = 60", "retry_delay_s = 1.5", "nightly.retry_delay_s"),
        ("retry_delay_s = 60", "retry_delay_s = 60\nretry_attemps = 2", "nightly.retry_attemps"),
        ("[nightly]", "[night]", "nightly: missing"),
        ("coalesce = true", "coalesce = ", "not valid TOML"),
    ],
)
def test_a_wrong_schedule_names_its_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_schedule_policy(write(tmp_path, VALID.replace(old, new)))


def test_a_missing_schedule_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="schedule not found"):
        load_schedule_policy(tmp_path / "schedule.toml")


@pytest.fixture
def services(services_factory: Callable[[str], Services]) -> Iterator[Services]:
    built = services_factory("sqlite")
    yield built
    built.engine.dispose()


def started(services: Services, policy: SchedulePolicy, now: dt.datetime) -> BackgroundScheduler:
    """Build a background scheduler and start it paused, so its job is stored but never runs."""
    # APScheduler processes due jobs once more while shutting down, paused or not: every time
    # here lies in the wall clock's future so that nothing is ever due.
    assert now > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    built = build_scheduler(
        services, policy=policy, scheduler_class=BackgroundScheduler, clock=lambda: now
    )
    assert isinstance(built, BackgroundScheduler)
    built.start(paused=True)
    return built


def stored_jobs(services: Services) -> int:
    with services.engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(table(JOBS_TABLE))).scalar_one()
        )


def test_the_nightly_job_is_stored_with_its_trigger_and_limits(services: Services) -> None:
    scheduler = started(services, POLICY, dt.datetime(2099, 3, 1, 0, 0, tzinfo=SHANGHAI))
    try:
        (job,) = scheduler.get_jobs()
        fields = {field.name: str(field) for field in job.trigger.fields}
    finally:
        scheduler.shutdown()
    assert job.id == JOB_ID
    assert ref_to_obj(job.func_ref) is scheduler_module.scheduled_nightly
    assert job.kwargs == {"attempts": 3, "delay_s": 60}
    assert (fields["minute"], fields["hour"], fields["day"], fields["day_of_week"]) == (
        "30", "1", "*", "*",
    )  # fmt: skip
    assert str(job.trigger.timezone) == "Asia/Shanghai"
    assert (job.coalesce, job.misfire_grace_time, job.max_instances) == (True, 3600, 1)
    assert job.next_run_time == dt.datetime(2099, 3, 1, 1, 30, tzinfo=SHANGHAI)
    assert JOBS_TABLE in inspect(services.engine).get_table_names()
    assert stored_jobs(services) == 1


def test_a_rebuild_replaces_the_job_and_keeps_a_missed_night(services: Services) -> None:
    started(services, POLICY, dt.datetime(2099, 3, 1, 0, 0, tzinfo=SHANGHAI)).shutdown()

    # Down over the 01:30 fire time and back at 03:00: the missed night stays due, so the
    # misfire grace decides whether it still runs.
    scheduler = started(services, POLICY, dt.datetime(2099, 3, 1, 3, 0, tzinfo=SHANGHAI))
    try:
        (job,) = scheduler.get_jobs()
    finally:
        scheduler.shutdown()
    assert job.next_run_time == dt.datetime(2099, 3, 1, 1, 30, tzinfo=SHANGHAI)
    assert stored_jobs(services) == 1

    # A changed cron makes the stored time meaningless: the job follows the new one.
    moved = SchedulePolicy(
        cron="0 2 * * *", misfire_grace_time_s=600, coalesce=False, retry_attempts=0,
        retry_delay_s=0,
    )  # fmt: skip
    scheduler = started(services, moved, dt.datetime(2099, 3, 1, 3, 0, tzinfo=SHANGHAI))
    try:
        (job,) = scheduler.get_jobs()
    finally:
        scheduler.shutdown()
    assert job.next_run_time == dt.datetime(2099, 3, 2, 2, 0, tzinfo=SHANGHAI)
    assert (job.coalesce, job.misfire_grace_time, job.kwargs["attempts"]) == (False, 600, 1)
    assert stored_jobs(services) == 1


def test_an_unknown_time_zone_is_a_configuration_error(services: Services) -> None:
    services.settings.timezone = "Mars/Olympus"
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        build_scheduler(services, policy=POLICY, scheduler_class=BackgroundScheduler)


def night(status: str = "published", refused: int = 0) -> NightlyResult:
    deliveries = [DeliveryReport(source="transit", file="t.csv", status="refused", error="bad")]
    return NightlyResult(
        as_of=dt.date(2025, 3, 1), deliveries=deliveries * refused, run_id=7, run_status=status,
        refused=refused,
    )  # fmt: skip


class FlakyNight:
    """Stands in for `nightly_job`: raises the given errors in turn, then returns a night."""

    def __init__(self, errors: list[BaseException], result: NightlyResult) -> None:
        self.errors = errors
        self.result = result
        self.calls: list[dt.date | None] = []

    def __call__(self, services: Services, *, as_of: dt.date | None = None) -> NightlyResult:
        self.calls.append(as_of)
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def run_with(
    monkeypatch: pytest.MonkeyPatch, job: FlakyNight, *, attempts: int = 3
) -> tuple[NightlyResult | None, list[float]]:
    monkeypatch.setattr(scheduler_module, "nightly_job", job)
    sleeps: list[float] = []
    services = Services(Settings())
    result = run_nightly(
        services=services, as_of=dt.date(2025, 3, 1), attempts=attempts, delay_s=60,
        sleep=sleeps.append,
    )  # fmt: skip
    return result, sleeps


def test_a_failing_night_is_retried_and_succeeds_when_it_recovers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = FlakyNight([OSError("database unreachable"), RunRefused("another run holds the lock")],
                     night())  # fmt: skip
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        result, sleeps = run_with(monkeypatch, job)
    assert result == night()
    assert job.calls == [dt.date(2025, 3, 1)] * 3
    assert sleeps == [60, 60]
    assert "database unreachable" in caplog.text and "Traceback" in caplog.text
    assert "run 7 published" in caplog.text


def test_a_night_refused_for_its_date_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A date after today (--once-as-of 2999-01-01) does not mend by waiting: one attempt.
    job = FlakyNight([RunDateRefused("--as-of 2999-01-01 is after today")], night())
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        result, sleeps = run_with(monkeypatch, job, attempts=4)
    assert result is None and len(job.calls) == 1 and sleeps == []
    assert "not retried: an operator must act" in caplog.text


def test_a_night_that_keeps_failing_is_tried_the_configured_times(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = FlakyNight([OSError("disk full")] * 5, night())
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        result, sleeps = run_with(monkeypatch, job, attempts=3)
    assert result is None
    assert len(job.calls) == 3
    assert sleeps == [60, 60]
    assert "failed after 3 attempts" in caplog.text and "--once-as-of 2025-03-01" in caplog.text


def test_a_guard_stopped_night_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = FlakyNight([], night("stopped_by_guard"))
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        result, sleeps = run_with(monkeypatch, job)
    assert result is not None and result.run_status == "stopped_by_guard"
    assert len(job.calls) == 1 and sleeps == []
    assert "mass-downgrade guard" in caplog.text


def test_an_error_an_operator_must_fix_is_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    job = FlakyNight([RollMissing("the benefit roll is empty")], night())
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        result, sleeps = run_with(monkeypatch, job)
    assert result is None
    assert len(job.calls) == 1 and sleeps == []
    assert "the benefit roll is empty" in caplog.text and "Traceback" not in caplog.text


def test_refused_deliveries_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        result, _ = run_with(monkeypatch, FlakyNight([], night(refused=1)))
    assert result is not None and result.refused == 1
    assert "1 refused" in caplog.text and "refused delivery t.csv of transit: bad" in caplog.text


def test_the_scheduled_function_builds_its_own_services(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = FlakyNight([OSError("once")], night())
    monkeypatch.setattr(scheduler_module, "nightly_job", job)
    monkeypatch.setattr(scheduler_module, "get_settings", lambda: services.settings)
    monkeypatch.setattr(scheduler_module.time, "sleep", lambda seconds: None)
    assert scheduler_module.scheduled_nightly(attempts=2, delay_s=0) == night()
    assert len(job.calls) == 2 and job.calls[0] == job.calls[1]


def test_run_now_without_a_schema_says_to_migrate(cli_env: dict[str, str]) -> None:
    code, output = invoke_cli(cli_env, "scheduler", "--run-now")
    assert code == 6
    assert "liveness db upgrade" in output


def test_run_now_without_a_roll_fails_with_a_clear_message(cli_env: dict[str, str]) -> None:
    migrate(cli_env)
    code, output = invoke_cli(cli_env, "scheduler", "--run-now")
    assert code == 14
    assert "the benefit roll is empty: ingest the registry source first" in output
    assert "not retried" in output and "the night failed" in output


def migrate(cli_env: dict[str, str]) -> None:
    services = Services(Settings(database_url=cli_env["LIVENESS_DATABASE_URL"]))
    upgrade(services.engine)
    services.engine.dispose()


def test_once_as_of_runs_that_night_and_reports_it(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(cli_env)
    job = FlakyNight([], night())
    monkeypatch.setattr(scheduler_module, "nightly_job", job)
    code, output = invoke_cli(cli_env, "scheduler", "--once-as-of", "2025-03-01")
    assert code == 0
    assert job.calls == [dt.date(2025, 3, 1)]
    assert "night as of 2025-03-01: run 7 published" in output


def test_run_now_exit_codes_follow_the_night(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(cli_env)
    monkeypatch.setattr(scheduler_module, "nightly_job", FlakyNight([], night("stopped_by_guard")))
    assert invoke_cli(cli_env, "scheduler", "--run-now")[0] == 7
    monkeypatch.setattr(scheduler_module, "nightly_job", FlakyNight([], night(refused=1)))
    assert invoke_cli(cli_env, "scheduler", "--run-now")[0] == 3


def test_the_scheduler_prints_its_next_run_and_stops_on_ctrl_c(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate(cli_env)

    def interrupted(self: BlockingScheduler) -> None:
        raise KeyboardInterrupt

    # The scheduler starts for real (the job is stored), then Ctrl-C arrives in its main loop.
    monkeypatch.setattr(BlockingScheduler, "_main_loop", interrupted)
    code, output = invoke_cli(cli_env, "scheduler")
    assert code == 0
    assert 'nightly job: cron "30 1 * * *" (Asia/Shanghai); next run ' in output
    assert "01:30+08:00" in output and "scheduler stopped" in output
    services = Services(Settings(database_url=cli_env["LIVENESS_DATABASE_URL"]))
    assert stored_jobs(services) == 1
    services.engine.dispose()


# ------------------------------------------------- the pull of a registry's death notices

PULLING = replace(POLICY, notice_pull_minutes=5)


def pulling_services(tmp_path: Path, database_url: str, *, transport: str = "sql") -> Services:
    """Return migrated services whose `registry_notice` is pulled from a SQLite table."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    sources = config / "sources.toml"
    body = sources.read_text(encoding="utf-8").replace(
        'path = "var/inbox/registry_notice"', f'transport = "{transport}"'
    )
    table = "death_events"
    with create_engine(f"sqlite:///{tmp_path / 'crvs.sqlite'}").begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE {table} (record_id, event, id_number, name, died_on, registered_on)"
            )
        )
        connection.execute(
            text(
                f"INSERT INTO {table} VALUES ('DR-1', 'registered', '', '张三', '2025-04',"
                " '2025-04-12')"
            )
        )
    body += f'\n[registry_notice.sql]\nurl = "sqlite:///{tmp_path / "crvs.sqlite"}"\n'
    body += f'table = "{table}"\n'
    sources.write_text(body, encoding="utf-8")
    services = Services(
        Settings(database_url=database_url, evidence_dir=tmp_path / "evidence", config_dir=config)
    )
    upgrade(services.engine)
    return services


def test_the_shipped_schedule_pulls_notices_every_few_minutes(tmp_path: Path) -> None:
    assert load_schedule_policy(REPO / "config" / "schedule.toml").notice_pull_minutes == 5
    assert load_schedule_policy(write(tmp_path, VALID)).notice_pull_minutes is None
    with pytest.raises(ConfigurationError, match=r"registry_notice\.pull_every_minutes"):
        load_schedule_policy(write(tmp_path, VALID + "[registry_notice]\npull_every_minutes = 0\n"))


def test_the_pull_job_is_registered_only_when_the_notices_are_pulled(
    tmp_path: Path, database_url_factory: Callable[[str], str]
) -> None:
    services = pulling_services(tmp_path, database_url_factory("sqlite"))
    scheduler = started(services, PULLING, dt.datetime(2099, 3, 1, 0, 0, tzinfo=SHANGHAI))
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown()
    assert set(jobs) == {JOB_ID, NOTICE_JOB_ID}
    pull = jobs[NOTICE_JOB_ID]
    assert ref_to_obj(pull.func_ref) is scheduler_module.scheduled_notice_pull
    assert isinstance(pull.trigger, IntervalTrigger)
    assert pull.trigger.interval == dt.timedelta(minutes=5)
    assert (pull.coalesce, pull.max_instances, pull.misfire_grace_time) == (True, 1, 300)
    assert stored_jobs(services) == 2

    # A period is needed to pull.
    with pytest.raises(ConfigurationError, match=r"\[registry_notice\] pull_every_minutes"):
        build_scheduler(services, policy=POLICY, scheduler_class=BackgroundScheduler)

    # Back to files: the stored pull job goes, the night stays.
    files = Services(services.settings.model_copy(update={"config_dir": REPO / "config"}))
    started(files, PULLING, dt.datetime(2099, 3, 1, 0, 0, tzinfo=SHANGHAI)).shutdown()
    assert stored_jobs(services) == 1
    files.engine.dispose()
    services.engine.dispose()


def test_the_scheduled_pull_loads_the_notices_once(
    tmp_path: Path, database_url_factory: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    services = pulling_services(tmp_path, database_url_factory("sqlite"))
    monkeypatch.setattr(scheduler_module, "get_settings", lambda: services.settings)
    with caplog.at_level(logging.INFO, logger="liveness.entry.scheduler"):
        scheduler_module.scheduled_notice_pull()
        scheduler_module.scheduled_notice_pull()
    assert "death notices: 1 loaded, 0 re-delivered, 0 quarantined, 1 match nobody" in caplog.text
    # the second pull read the notice at the watermark again and logged nothing new
    assert caplog.text.count("death notices:") == 1
    with services.sessions() as session:
        assert session.scalars(select(func.count()).select_from(DeathRecord)).one() == 1
    services.engine.dispose()
