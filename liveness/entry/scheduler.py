"""The nightly schedule: APScheduler 3 with its jobs in the state database, retries, reports.

`build_scheduler` registers the job `nightly` from config/schedule.toml; when it fires,
`scheduled_nightly` builds its own services from the settings and calls `run_nightly`, the one
top-level job wrapper, which retries a failed night and reports every outcome via `logging`.
Where a civil registry's death notices are pulled (sources.toml gives `registry_notice` a sql or
http transport), a second job, `registry_notice_pull`, pulls them every few minutes
(`scheduled_notice_pull`), so that a death reaches the list at the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import utc_timestamp_to_datetime
from pydantic import Field, field_validator
from sqlalchemy import select

from connectors import RetriableError
from liveness.certification.runner import RunDateRefused
from liveness.entry.jobs import NightlyResult, local_today, nightly_job, notice_pull_job
from liveness.errors import ConfigurationError, LivenessError, RunRefused
from liveness.ingest.notices import NOTICE_SOURCE
from liveness.policy_files import PolicyModel, load_policy
from liveness.services import Services
from liveness.settings import Settings, get_settings
from models import RunStatus

__all__ = [
    "JOBS_TABLE",
    "JOB_ID",
    "NOTICE_JOB_ID",
    "SchedulePolicy",
    "build_scheduler",
    "load_schedule_policy",
    "notices_pulled",
    "run_nightly",
    "schedule_policy_path",
    "scheduled_nightly",
    "scheduled_notice_pull",
]

logger = logging.getLogger(__name__)

JOB_ID = "nightly"
NOTICE_JOB_ID = "registry_notice_pull"
JOBS_TABLE = "apscheduler_jobs"


@dataclass(frozen=True)
class SchedulePolicy:
    """When the nightly job fires, how late it may still run, and how a failed night retries.

    `notice_pull_minutes`: how often a registry's death notices are pulled, where they are
    (None: the file sets no period).
    """

    cron: str
    misfire_grace_time_s: int
    coalesce: bool
    retry_attempts: int
    retry_delay_s: int
    notice_pull_minutes: int | None = None

    @property
    def attempts(self) -> int:
        """Return how many times a failing night is tried in all (the first try and retries)."""
        return 1 + self.retry_attempts


def schedule_policy_path(settings: Settings) -> Path:
    """Return the path of the schedule file."""
    return settings.config_dir / "schedule.toml"


class NightlyTable(PolicyModel):
    """The `[nightly]` table of config/schedule.toml."""

    cron: str
    misfire_grace_time_s: int = Field(ge=1)
    coalesce: bool
    retry_attempts: int = Field(ge=0)
    retry_delay_s: int = Field(ge=0)

    @field_validator("cron")
    @classmethod
    def _a_crontab(cls, cron: str) -> str:
        try:
            CronTrigger.from_crontab(cron)
        except ValueError as error:
            raise ValueError(
                f'{cron!r} is not a crontab string like "30 1 * * *": {error}'
            ) from None
        return cron


class NoticePullTable(PolicyModel):
    """The `[registry_notice]` table of config/schedule.toml."""

    pull_every_minutes: int = Field(ge=1)


class ScheduleFile(PolicyModel):
    """The keys of config/schedule.toml, as the file holds them."""

    nightly: NightlyTable
    registry_notice: NoticePullTable | None = None


def load_schedule_policy(path: Path) -> SchedulePolicy:
    """Read and validate the schedule file."""
    model = load_policy(path, ScheduleFile, what="schedule").model
    pull = model.registry_notice
    return SchedulePolicy(
        **model.nightly.model_dump(),
        notice_pull_minutes=pull.pull_every_minutes if pull is not None else None,
    )


def notices_pulled(services: Services) -> bool:
    """Tell whether the registry's death notices are pulled (a sql or http transport)."""
    config = services.source_configs.get(NOTICE_SOURCE)
    return config is not None and config.transport != "files"


def _needs_operator(error: BaseException) -> bool:
    # The engine's own errors (configuration, no roll, no schema, a date after today or before
    # the latest run) do not heal by waiting; a run refused because another holds the lock
    # does, and so do database and network failures (a connector's transient one among them).
    if isinstance(error, RunDateRefused):
        return True
    return isinstance(error, LivenessError) and not isinstance(error, RunRefused | RetriableError)


def _report(result: NightlyResult) -> None:
    refused = [report for report in result.deliveries if report.status == "refused"]
    if result.run_status == RunStatus.STOPPED_BY_GUARD:
        logger.error(
            "night as of %s: run %d stopped by the mass-downgrade guard, nothing published; "
            "not retried: an operator must check the sources (liveness deliveries), then "
            "`liveness run --as-of %s`, with --override-guard if the drop is real",
            result.as_of, result.run_id, result.as_of,
        )  # fmt: skip
    elif result.run_status == RunStatus.PUBLISHED:
        logger.info(
            "night as of %s: run %d published; %d deliveries, %d refused",
            result.as_of, result.run_id, len(result.deliveries), result.refused,
        )  # fmt: skip
    else:
        logger.error(
            "night as of %s: run %d ended %s; not retried",
            result.as_of, result.run_id, result.run_status,
        )  # fmt: skip
    for report in refused:
        logger.warning("refused delivery %s of %s: %s", report.file, report.source, report.error)


def run_nightly(
    *,
    services: Services,
    as_of: dt.date | None = None,
    attempts: int,
    delay_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> NightlyResult | None:
    """Run the nightly job, retrying a failure, and report the outcome; None if it failed."""
    # Fixed once, so that a retry after midnight still certifies the night it was meant for.
    day = as_of or local_today(services) - dt.timedelta(days=1)
    attempts = max(attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            result = nightly_job(services, as_of=day)
        except Exception as error:  # the one top-level job wrapper: every failure is reported
            if isinstance(error, LivenessError):
                logger.error("night as of %s, attempt %d of %d: %s", day, attempt, attempts, error)
            else:
                logger.exception("night as of %s, attempt %d of %d failed", day, attempt, attempts)
            if _needs_operator(error):
                logger.error("night as of %s failed; not retried: an operator must act", day)
                return None
            if attempt < attempts:
                logger.warning("night as of %s: retrying in %s s", day, delay_s)
                # Retrying is safe: deliveries already loaded are recognised by their checksum,
                # and a run publishes all or nothing.
                sleep(delay_s)
            continue
        _report(result)
        return result
    logger.error(
        "night as of %s failed after %d attempts; after fixing the cause run "
        "`liveness scheduler --once-as-of %s`",
        day, attempts, day,
    )  # fmt: skip
    return None


def scheduled_nightly(*, attempts: int, delay_s: float) -> NightlyResult | None:
    """Run the nightly job from the scheduler, with services of its own."""
    services = Services(get_settings())
    try:
        return run_nightly(services=services, attempts=attempts, delay_s=delay_s)
    finally:
        services.engine.dispose()


def scheduled_notice_pull() -> None:
    """Pull the registry's death notices from the scheduler, with services of its own."""
    services = Services(get_settings())
    try:
        report = notice_pull_job(services)
    except Exception as error:  # a job's top-level wrapper: the next pull tries again
        if isinstance(error, LivenessError):
            logger.error("pulling death notices failed: %s", error)
        else:
            logger.exception("pulling death notices failed")
        return
    finally:
        services.engine.dispose()
    if report.status == "refused":
        logger.warning("death notices refused: %s", report.error)
    elif report.loaded or report.quarantined:
        logger.info(
            "death notices: %d loaded, %d re-delivered, %d quarantined, %d match nobody",
            report.loaded, report.redelivered, report.quarantined, report.unmatched,
        )  # fmt: skip


def _next_run_time(
    store: SQLAlchemyJobStore, *, trigger: CronTrigger, now: dt.datetime
) -> dt.datetime:
    """Return the stored job's pending fire time if still on schedule, else the next one."""
    table = store.jobs_t
    table.create(store.engine, checkfirst=True)
    with store.engine.connect() as connection:
        stored = connection.execute(
            select(table.c.next_run_time).where(table.c.id == JOB_ID)
        ).scalar_one_or_none()
    upcoming: dt.datetime = trigger.get_next_fire_time(None, now)
    if stored is None:
        return upcoming
    # Replacing the job must not lose a night missed while the scheduler was down: keep the
    # stored time, so the misfire grace decides, unless the cron changed and it is off schedule.
    pending: dt.datetime = utc_timestamp_to_datetime(stored).astimezone(trigger.timezone)
    if pending < upcoming and trigger.get_next_fire_time(None, pending) == pending:
        return pending
    return upcoming


def build_scheduler(
    services: Services,
    *,
    policy: SchedulePolicy,
    scheduler_class: type[BaseScheduler] = BlockingScheduler,
    clock: Callable[[], dt.datetime] | None = None,
) -> BaseScheduler:
    """Return a scheduler, not started, whose jobs are stored in the state database.

    The job store keeps the jobs in APScheduler's own table `apscheduler_jobs`, which it
    creates itself outside the migrations; nothing else reads or writes it. Building again
    replaces the job `nightly` (same id), keeping a pending fire time so a night missed while
    down is not lost. The job `registry_notice_pull` is there only while the registry's notices
    are pulled (`notices_pulled`); the period is the schedule's `[registry_notice]`.
    """
    try:
        timezone = ZoneInfo(services.settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"LIVENESS_TIMEZONE: unknown time zone {services.settings.timezone!r}"
        ) from None
    trigger = CronTrigger.from_crontab(policy.cron, timezone=timezone)
    store = SQLAlchemyJobStore(engine=services.engine, tablename=JOBS_TABLE)
    now = clock() if clock is not None else dt.datetime.now(timezone)
    scheduler = scheduler_class(jobstores={"default": store}, timezone=timezone)
    scheduler.add_job(
        scheduled_nightly,
        trigger=trigger,
        id=JOB_ID,
        name="nightly: ingest every source, then certify",
        kwargs={"attempts": policy.attempts, "delay_s": policy.retry_delay_s},
        replace_existing=True,
        coalesce=policy.coalesce,
        misfire_grace_time=policy.misfire_grace_time_s,
        max_instances=1,
        next_run_time=_next_run_time(store, trigger=trigger, now=now),
    )
    if not notices_pulled(services):
        # No longer pulled: a job stored by an earlier configuration goes.
        with contextlib.suppress(JobLookupError):
            store.remove_job(NOTICE_JOB_ID)
        return scheduler
    minutes = policy.notice_pull_minutes
    if minutes is None:
        raise ConfigurationError(
            f"schedule.toml: [registry_notice] pull_every_minutes is needed: sources.toml pulls "
            f"{NOTICE_SOURCE} by {services.source_configs[NOTICE_SOURCE].transport}"
        )
    scheduler.add_job(
        scheduled_notice_pull,
        trigger=IntervalTrigger(minutes=minutes, timezone=timezone),
        id=NOTICE_JOB_ID,
        name="registry_notice_pull: pull a civil registry's death notices",
        replace_existing=True,
        # A pull missed is made good by the next one, which reads from the same watermark.
        coalesce=True,
        misfire_grace_time=minutes * 60,
        max_instances=1,
    )
    return scheduler
