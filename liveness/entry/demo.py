"""`liveness demo`: a whole certification cycle on a simulated city, scored against its truth."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from liveness.certification.runner import execute_run, local_today
from liveness.certification.service import cycle_days
from liveness.db import query_frame, session_scope
from liveness.entry.demo_leads import demo_leads, demo_table
from liveness.entry.reports import print_run_report
from liveness.evidence.compaction import compact_store
from liveness.ingest import INGEST_ORDER, ingest_order  # noqa: F401 (INGEST_ORDER: for tests)
from liveness.ingest.notices import NOTICE_SOURCE
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import get_settings
from liveness.simulate.integrity import CityTooSmall, plant_integrity
from models import (
    Benefit,
    BenefitStatus,
    Certification,
    ListEntry,
    Notice,
    Person,
    ReviewTask,
    Run,
    RunStatus,
)

DEMO_START = dt.date(2025, 1, 1)
# Runs after the first one below which the review rate still mostly shows the first run's
# backlog (a demo's display threshold, not policy).
STEADY_RUNS = 6


def suspension_list(services: Services, run_id: int) -> pd.DataFrame:
    """Return a run's list entries as the payment system would receive them."""
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(
                ListEntry.seq, Person.person_ref, Benefit.benefit_type, ListEntry.action,
                ListEntry.reason, ListEntry.effective_on, ListEntry.amount,
            )
            .join(Person, Person.id == ListEntry.person_id)
            .join(Benefit, Benefit.id == ListEntry.benefit_id)
            .where(ListEntry.run_id == run_id)
            .order_by(ListEntry.seq)
        ).all()  # fmt: skip
    return pd.DataFrame(
        rows,
        columns=["seq", "person_ref", "benefit_type", "action", "reason", "effective_on", "amount"],
    ).astype({"benefit_type": str, "action": str, "reason": str})


def score_against_truth(
    truth: pd.DataFrame, entries: pd.DataFrame, as_of: dt.date
) -> dict[str, object]:
    """Count caught deaths and wrongful suspensions of a run against the simulation's truth."""
    died = pd.to_datetime(truth["died_on"], errors="coerce")
    dead = truth[died.notna() & (died <= pd.Timestamp(as_of))]
    suspended = set(entries.loc[entries["action"] == "suspend", "person_ref"])
    caught = dead["person_ref"].isin(suspended)
    by_record = (
        dead.assign(caught=caught.to_numpy())
        .groupby(dead["death_record"].fillna("none"))["caught"]
        .agg(["sum", "size"])
    )
    alive_refs = set(truth["person_ref"]) - set(dead["person_ref"])
    wrongful = sorted(suspended & alive_refs)
    return {
        "dead": len(dead),
        "caught": int(caught.sum()),
        "by_record": {str(k): (int(v["sum"]), int(v["size"])) for k, v in by_record.iterrows()},
        "wrongful": wrongful,
        "living": len(alive_refs),
    }


def demo_start(*, days: int, today: dt.date) -> dt.date:
    """Return the simulated city's first day: `DEMO_START`, or a 1 January early enough.

    Runs cannot be dated after today, so a city too long to end by today starts on 1 January
    of the latest year that lets it (the same start on any day of a given year).
    """
    start = DEMO_START
    while start + dt.timedelta(days=days - 1) > today:
        start = start.replace(year=start.year - 1)
    return start


def month_ends(*, start: dt.date, last: dt.date) -> list[dt.date]:
    """Return the last day of each month from `start`'s month through `last` (kept if earlier)."""
    ends: list[dt.date] = []
    year, month = start.year, start.month
    while True:
        following = dt.date(year + month // 12, month % 12 + 1, 1)
        end = following - dt.timedelta(days=1)
        if end >= last:
            return [*ends, last]
        ends.append(end)
        year, month = following.year, following.month


def cycle_figures(
    services: Services, *, truth: pd.DataFrame, since: dt.date, end: dt.date
) -> dict[str, Any]:
    """Measure the cycles against the truth: silent share, death to suspension, wrong stops."""
    with session_scope(services.sessions) as session:
        entries = query_frame(
            session,
            select(Person.person_ref, ListEntry.action, ListEntry.reason, ListEntry.effective_on,
                   Run.as_of)
            .join(Person, Person.id == ListEntry.person_id)
            .join(Run, Run.id == ListEntry.run_id)
            .order_by(ListEntry.seq),
            ["person_ref", "action", "reason", "effective_on", "as_of"],
        )  # fmt: skip
        certified = query_frame(
            session,
            select(Person.person_ref, Certification.source).join(
                Person, Person.id == Certification.person_id
            ),
            ["person_ref", "source"],
        )
        tasks = query_frame(
            session,
            select(
                ReviewTask.grid_code, ReviewTask.kind, ReviewTask.opened_on, ReviewTask.due_on,
                ReviewTask.closed_on, Person.person_ref, ReviewTask.status, ReviewTask.planned_week,
            ).join(Person, Person.id == ReviewTask.person_id),
            ["grid_code", "kind", "opened_on", "due_on", "closed_on", "person_ref", "status",
             "planned_week"],
        )  # fmt: skip
        notices = query_frame(
            session,
            select(Person.person_ref, Notice.created_on).join(
                Person, Person.id == Notice.person_id
            ),
            ["person_ref", "created_on"],
        )
        certified_on = query_frame(
            session,
            select(Person.person_ref, Certification.certified_on, Certification.source).join(
                Person, Person.id == Certification.person_id
            ),
            ["person_ref", "certified_on", "source"],
        )
        certified_on["source"] = certified_on["source"].astype(object).map(str)
        runs = list(
            session.scalars(
                select(Run.as_of).where(Run.status == RunStatus.PUBLISHED).order_by(Run.as_of)
            )
        )
        paid = query_frame(
            session,
            select(Person.person_ref)
            .join(Benefit, Benefit.person_id == Person.id)
            .where(Benefit.status == BenefitStatus.ACTIVE)
            .distinct(),
            ["person_ref"],
        )
        held = query_frame(
            session,
            select(Person.person_ref, Benefit.benefit_type).join(
                Benefit, Benefit.person_id == Person.id
            ),
            ["person_ref", "benefit_type"],
        )
    # Each person's certification cycle in months: the shortest of their benefits'.
    months = cycle_days(services.certification_policy, held["benefit_type"], field="valid_months")
    cycle_months = held.assign(months=months).groupby("person_ref")["months"].min()
    for frame, column in ((entries, "action"), (entries, "reason"), (certified, "source")):
        frame[column] = frame[column].astype(object).map(str)
    died = pd.to_datetime(truth["died_on"], errors="coerce")
    living = truth.loc[died.isna() | (died > pd.Timestamp(end)), "person_ref"]
    silent = set(certified.loc[certified["source"] == "data_comparison", "person_ref"])
    suspended = entries[entries["action"] == "suspend"].drop_duplicates("person_ref")
    notice_column = ["registry_notice"] if "registry_notice" in truth else []
    joined = suspended.merge(
        truth[["person_ref", "died_on", "death_record", *notice_column]], on="person_ref"
    )
    joined_died = pd.to_datetime(joined["died_on"], errors="coerce")
    living_then = joined_died.isna() | (joined_died > pd.to_datetime(joined["as_of"]))
    wrongful = joined[living_then & (joined["reason"] == "deceased")]
    # Only a lapse follows a review and notice; a duplicate or a prison term is the registry's.
    lapsed_living = joined[living_then & (joined["reason"] == "lapsed")]
    dead = joined[joined_died.notna() & (joined_died <= pd.to_datetime(joined["as_of"]))]
    # Delays count deaths after the first run: those before it were a backlog it inherited.
    dead = dead[pd.to_datetime(dead["died_on"]) > pd.Timestamp(since)]
    delay = (pd.to_datetime(dead["as_of"]) - pd.to_datetime(dead["died_on"])).dt.days
    no_record = dead["death_record"].fillna("none").eq("none").to_numpy()
    notified = (
        dead["registry_notice"].eq("true").to_numpy()
        if notice_column
        else np.zeros(len(dead), dtype=bool)
    )

    def spread(days: pd.Series) -> dict[str, float | int | None]:
        if days.empty:
            return {"suspended": 0, "median_days": None, "p95_days": None}
        return {
            "suspended": len(days),
            "median_days": round(float(days.median()), 1),
            "p95_days": round(float(days.quantile(0.95)), 1),
        }

    # Against the truth: the dead still drawing at the end, and the living suspended for a
    # lapse while a visit the agency owed them was overdue (the agency's delay, never theirs).
    dead_at_end = truth[died.notna() & (died <= pd.Timestamp(end))]
    still_paid = dead_at_end[dead_at_end["person_ref"].isin(set(paid["person_ref"]))]
    recent = pd.to_datetime(still_paid["died_on"]) > pd.Timestamp(end - dt.timedelta(days=60))
    owed = tasks[tasks["kind"].astype(str).isin(["home_visit", "death_review"])].merge(
        lapsed_living[["person_ref", "as_of"]], on="person_ref"
    )
    at = pd.to_datetime(owed["as_of"])
    overdue_then = (
        (pd.to_datetime(owed["opened_on"]) <= at)
        & (pd.to_datetime(owed["due_on"]) < at)
        & (owed["closed_on"].isna() | (pd.to_datetime(owed["closed_on"]) > at))
    )
    reviews = tasks[tasks["kind"].astype(str).isin(["face_verification", "home_visit"])]
    per_grid = reviews.groupby("grid_code").size()
    visits = reviews[reviews["kind"].astype(str) == "home_visit"].groupby("grid_code").size()
    all_dead = truth.loc[died.notna() & (died <= pd.Timestamp(end)), "person_ref"]
    return {
        "bother": _bother(
            tasks=tasks,
            notices=notices,
            certified_on=certified_on,
            persons=len(truth),
            runs=runs,
            capacity=services.certification_policy.capacity.of,
            cycle_months=cycle_months,
        ),
        "living": len(living),
        "living_certified_silently_share": round(
            len(silent & set(living)) / max(len(living), 1), 4
        ),
        "dead_in_period": len(all_dead),
        "dead_after_first_run": int(
            (died.notna() & (died > pd.Timestamp(since)) & (died <= pd.Timestamp(end))).sum()
        ),
        "dead_after_first_run_suspended": len(dead),
        "death_to_suspension": {
            "all": spread(delay),
            "with_death_record": spread(delay[~no_record]),
            "without_death_record": spread(delay[no_record]),
            # deaths the civil registry notified within a day (registry_notice)
            "notified_by_registry": spread(delay[notified]),
        },
        "wrongful_suspensions": len(wrongful),
        "wrongful_suspension_refs": sorted(wrongful["person_ref"]),
        "living_suspended_after_failed_review": len(lapsed_living),
        "dead_still_paid_at_end": len(still_paid),
        "dead_still_paid_at_end_died_last_60_days": int(recent.sum()),
        "living_suspended_while_review_overdue": int(
            owed.loc[overdue_then.to_numpy(), "person_ref"].nunique()
        ),
        "reinstatements": int((entries["action"] == "reinstate").sum()),
        "review_workload": {
            "grids": len(per_grid),
            "reviews_total": int(per_grid.sum()),
            "reviews_per_grid_mean": round(float(per_grid.mean()), 1) if len(per_grid) else 0.0,
            "reviews_per_grid_max": int(per_grid.max()) if len(per_grid) else 0,
            "visits_per_grid_mean": round(float(visits.mean()), 1) if len(visits) else 0.0,
            "visits_per_grid_max": int(visits.max()) if len(visits) else 0,
        },
    }


def _bother(
    *, tasks: pd.DataFrame, notices: pd.DataFrame, certified_on: pd.DataFrame, persons: int,
    runs: list[dt.date], capacity: Callable[[str], int], cycle_months: pd.Series | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Measure how much the living were bothered: reviews, needless notices, visits per week.

    Visits count in the week the run planned them for (else the week they opened), against
    the grid's weekly capacity.

    The first run inherits a backlog, the roll's history and not the engine's doing: everyone
    whose certification fell due before it. Its reviews and their follow-ups (a later review
    of a person the first run reviewed, with no certification of theirs in between) are the
    backlog's (`backlog_reviews`); the others, opened after the first run, are the steady
    state's, per 100 persons and scaled to a 12-month certification cycle. `certified_on`
    holds every certification (person_ref, certified_on, source). A notice is needless when
    the person's next certification after it was the data's, not the review's it announced (a
    data certification a cycle later, after the review certified them, is not its doing).
    `cycle_months` (per person, the months of their shortest certification cycle) gives the
    cycles that came due over the same months: a six-month cycle comes due twice a year.
    """
    kinds = tasks["kind"].astype(str)
    reviews = tasks[kinds.isin(["face_verification", "home_visit"])]
    opened = pd.to_datetime(reviews["opened_on"])
    first = pd.Timestamp(runs[0]) if runs else opened.min()
    backlog = _backlog(reviews, certified_on, first=first)
    later = reviews[(opened > first).to_numpy() & ~backlog] if runs else reviews
    months = max((runs[-1] - runs[0]).days / 30.44, 1.0) if len(runs) > 1 else 1.0
    # Each notice's next certification: needless when the data gave it, not the review.
    after = notices.merge(certified_on, on="person_ref")
    after = after[pd.to_datetime(after["certified_on"]) > pd.to_datetime(after["created_on"])]
    after = after.sort_values("certified_on", kind="stable")
    following = after.drop_duplicates(["person_ref", "created_on"])
    needless = following[following["source"] == "data_comparison"]
    visits = tasks[kinds == "home_visit"]
    planned = pd.to_datetime(visits["planned_week"].fillna(visits["opened_on"]))
    per_week = visits.groupby([visits["grid_code"], planned.dt.to_period("W-SUN")]).size()
    limits = per_week.index.get_level_values(0).map(capacity).to_numpy()
    cycles = float((months / cycle_months).sum()) if cycle_months is not None else 0.0
    return {
        "reviews_after_backlog": len(later),
        "reviews_per_100_persons_per_cycle": round(
            len(later) / max(persons, 1) * 100 * 12 / months, 2
        ),
        "person_cycles_due": round(cycles, 1),
        "reviews_per_100_person_cycles_due": round(len(later) / cycles * 100, 2)
        if cycles
        else None,
        "backlog_reviews": int(backlog.sum()),
        "notices": len(notices),
        "notices_to_persons_later_certified_by_data": int(needless["person_ref"].nunique()),
        "notices_to_persons_later_certified_by_data_share": round(
            needless["person_ref"].nunique() / max(persons, 1), 4
        ),
        "tasks_closed_by_data": int((tasks["status"].astype(str) == "closed_by_data").sum()),
        "visits_per_grid_week_mean": round(float(per_week.mean()), 2) if len(per_week) else 0.0,
        "visits_per_grid_week_max": int(per_week.max()) if len(per_week) else 0,
        "grid_weeks_over_capacity": int((per_week.to_numpy() > limits).sum()),
    }


def _backlog(
    reviews: pd.DataFrame, certified: pd.DataFrame, *, first: pd.Timestamp
) -> npt.NDArray[np.bool_]:
    """Mark the first run's reviews and their follow-ups, before the person was certified."""
    opened = pd.to_datetime(reviews["opened_on"])
    at_first = set(reviews.loc[(opened <= first).to_numpy(), "person_ref"])
    # A certification after the first run ends the person's backlog episode.
    since = certified[pd.to_datetime(certified["certified_on"]) > first]
    ended = since.groupby("person_ref")["certified_on"].min()
    ended_on = pd.to_datetime(reviews["person_ref"].map(ended))
    inherited = reviews["person_ref"].isin(at_first) & (ended_on.isna() | (opened < ended_on))
    marked: npt.NDArray[np.bool_] = ((opened <= first) | inherited).to_numpy()
    return marked


def ingest_city(
    services: Services, city: Path, *, skip: frozenset[str] = frozenset()
) -> tuple[dict[str, int], list[str]]:
    """Ingest every source the simulated city delivered (but `skip`); return totals and refusals."""
    totals = {"read": 0, "loaded": 0, "redelivered": 0, "quarantined": 0, "unmatched": 0}
    refused = []
    for source in ingest_order(services.source_configs):
        if source in skip or not (city / source).is_dir():
            continue  # a declared source the simulated city does not deliver
        for report in ingest_paths(services, source=source, paths=[city / source]):
            totals["read"] += report.rows_read
            totals["loaded"] += report.loaded
            totals["redelivered"] += report.redelivered
            totals["quarantined"] += report.quarantined
            totals["unmatched"] += report.unmatched
            if report.error:
                refused.append(report.error)
    return totals, refused


def run_cycles(
    services: Services, *, truth: pd.DataFrame, ends: list[dt.date], seed: int, inbox: Path,
    console: Console, elapsed: Callable[[], str],
) -> Run:  # fmt: skip
    """Run certification at each of `ends`; between runs the simulated people answer reviews."""
    from liveness.simulate.responders import answer_reviews

    run = None
    for number, as_of in enumerate(ends):
        if number:
            # Between two runs, people answer face verification requests and grid workers visit.
            answer_reviews(services, truth=truth, on=as_of, seed=seed, inbox=inbox)
        run = execute_run(services, as_of=as_of)
        if run.status != "published":
            console.print(f"[red]run as of {as_of} {run.status}:[/] {run.report.get('guard')}")
            continue
        levels = run.report["levels"]
        console.print(
            f"[bold]4.{number + 1} run as of {as_of}[/]: strong {levels['strong']:,}, medium "
            f"{levels['medium']:,}, weak {levels['weak']:,}, deceased {levels['deceased']:,}; "
            f"{sum(run.report['tasks_opened'].values()):,} reviews opened, "
            f"{run.report['suspensions']:,} suspended {elapsed()}"
        )
    assert run is not None
    return run


def estimator_for_runs(services: Services, *, first_run: dt.date, console: Console) -> str | None:
    """Where the policy lets the estimator certify, train and save it on what the first run knows.

    Trained as of the first run less the label horizon, its labels end at the first run: the
    runs never use an artifact that knew their future. Returns the artifact's version.
    """
    from liveness.estimator import EstimatorError
    from liveness.estimator.artifacts import artifacts_dir
    from liveness.estimator.service import estimator_config, train_estimator

    config = estimator_config(services.settings)
    if not config.certify_enabled:
        return None
    as_of = first_run - dt.timedelta(days=config.horizon_days)
    try:
        with session_scope(services.sessions) as session:
            result = train_estimator(
                session, as_of=as_of, store=services.store, policies=services.policies,
                config=config, folder=artifacts_dir(services.settings),
            )  # fmt: skip
    except EstimatorError as error:
        console.print(f"   the runs' estimator was not trained: {error}")
        return None
    console.print(
        f"   the runs' estimator ([certify] is enabled): artifact {result.artifact.version}, "
        f"trained as of {as_of}, its labels up to the first run"
    )
    return result.artifact.version


def _certified_by_estimator(services: Services) -> int:
    """Return how many certifications the published runs owe to the learned estimator."""
    with session_scope(services.sessions) as session:
        reports = session.scalars(select(Run.report).where(Run.status == RunStatus.PUBLISHED))
        return sum(int(report.get("certified_by_estimator", 0)) for report in reports)


def demo_services(folder: Path) -> Services:
    """Return services on an embedded SQLite database and evidence store in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = get_settings().model_copy(
        update={
            "database_url": f"sqlite:///{folder / 'state.sqlite'}",
            "evidence_dir": folder / "evidence",
        }
    )
    return Services(settings)


def run_demo(
    *, persons: int, days: int, seed: int, out: Path | None, console: Console, months: int = 3,
    json_output: bool = False, scenarios: bool = True, ablation: bool = False,
    ablated_scenarios: tuple[str, ...] | None = None, nightly: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Simulate, ingest, run monthly cycles with simulated answers, and score against the truth.

    Without `scenarios` the city delivers the built-in trace sources only (the comparison);
    with `ablation`, the cycles run again once per data scenario (or per one of
    `ablated_scenarios`), without it. The cycles run again without the civil registry's
    death notices, to measure what its feed gains; with `nightly`, the last month runs
    nightly too, with and without the feed.
    """
    from liveness.simulate import simulate_city

    started = time.perf_counter()
    folder = out or Path(tempfile.mkdtemp(prefix="liveness-demo-"))
    services = demo_services(folder)
    start = demo_start(days=days, today=local_today(services))
    last_day = start + dt.timedelta(days=days - 1)

    def elapsed() -> str:
        return f"({time.perf_counter() - started:.1f} s)"

    with console.status(f"simulating {persons:,} persons over {days} days"):
        summary = simulate_city(
            persons=persons, start=start, days=days, seed=seed, out=folder / "city",
            scenarios=scenarios,
        )  # fmt: skip
    console.print(
        f"[bold]1. simulated[/] {summary.persons:,} persons, {summary.deaths:,} deaths, "
        f"{summary.traces:,} traces in {summary.files:,} files {elapsed()}"
    )

    # Fraud patterns for the integrity rules: shared accounts, second identities, a dead
    # person's card still in use (liveness leads).
    try:
        planted = plant_integrity(folder / "city", seed=seed)
    except CityTooSmall as too_small:
        # A tiny city still runs; only the integrity screening has nothing to find.
        planted = None
        console.print(f"   integrity patterns not planted: {too_small}")
    upgrade(services.engine)
    with console.status("ingesting"):
        totals, refused = ingest_city(services, folder / "city")
    console.print(
        f"[bold]2. ingested[/] {totals['read']:,} rows: {totals['loaded']:,} loaded, "
        f"{totals['redelivered']:,} re-delivered, {totals['quarantined']:,} quarantined "
        f"({totals['unmatched']:,} matched nobody, kept) {elapsed()}"
    )
    for error in refused:
        console.print(f"   [red]refused:[/] {error}")
    with console.status("compacting the evidence store"):
        compacted = compact_store(services.sessions, store=services.store)
    console.print(
        f"[bold]   compacted[/] {sum(r.parts_before for r in compacted):,} parts into "
        f"{len(compacted):,}, one per source and month, clustered by person {elapsed()}"
    )

    estimator: dict[str, Any] | None = None
    if days >= 300:
        from liveness.estimator import EstimatorError, demo_evaluation

        # Train half-way through the year, evaluate on what the next 90 days revealed.
        train_as_of = start + dt.timedelta(days=days // 2 - 1)
        try:
            with console.status("training the learned estimator"):
                evaluation = demo_evaluation(
                    services,
                    train_as_of=train_as_of,
                    evaluate_as_of=train_as_of + dt.timedelta(days=90),
                    horizon_days=90,
                )
        except EstimatorError as error:
            # A small city may hold too few deaths to calibrate on; the rules still run.
            console.print(f"[bold]3. learned estimator[/] skipped: {error}")
        else:
            console.print(
                f"[bold]3. learned estimator[/] trained as of {train_as_of}, beside the rules "
                f"{elapsed()}"
            )
            evaluation.render(console)
            estimator = evaluation.as_dict()

    truth = pd.read_csv(folder / "city" / "truth.csv", dtype=str, keep_default_na=False)
    truth = truth.replace({"": None})
    ends = month_ends(start=start, last=last_day)[-(months + 1) :]
    runs_estimator = estimator_for_runs(services, first_run=ends[0], console=console)
    run = run_cycles(
        services, truth=truth, ends=ends, seed=seed, inbox=folder / "answers", console=console,
        elapsed=elapsed,
    )  # fmt: skip
    assert run is not None
    print_run_report(run.report, to=console)

    if planted is None:
        leads = pd.DataFrame()
        console.print("[bold]5. integrity leads[/] skipped: no patterns were planted")
    else:
        with console.status("screening for integrity leads"):
            leads = demo_leads(services, planted=planted, as_of=last_day)
        console.print(f"[bold]5. integrity leads[/] against the planted patterns {elapsed()}")
        console.print(demo_table(leads))

    entries = suspension_list(services, run.id)
    list_path = folder / "suspensions.csv"
    entries.to_csv(list_path, index=False)
    figures = cycle_figures(services, truth=truth, since=ends[0], end=last_day)
    figures["runs_estimator"] = runs_estimator
    figures["certified_by_estimator"] = _certified_by_estimator(services)
    _print_figures(console, figures)
    feed: dict[str, Any] | None = None
    if (folder / "city" / NOTICE_SOURCE).is_dir():
        from liveness.entry.demo_ablation import feed_comparison, feed_table

        with console.status("the same cycles without the registry's death notices"):
            feed = feed_comparison(
                city=folder / "city", folder=folder / "without_feed", truth=truth, ends=ends,
                last_day=last_day, seed=seed, figures=figures, nightly=nightly,
            )  # fmt: skip
        console.print(f"[bold]   the registry's feed[/] measured {elapsed()}")
        console.print(feed_table(feed))
    ablated: list[dict[str, Any]] = []
    if ablation:
        from liveness.entry.demo_ablation import ablation as run_ablation
        from liveness.entry.demo_ablation import ablation_table, headline

        console.print("[bold]6. ablation[/]: the same cycles without each data scenario")
        ablated = run_ablation(
            city=folder / "city", folder=folder / "ablation", truth=truth, ends=ends,
            last_day=last_day, seed=seed, console=console, scenarios=ablated_scenarios,
        )  # fmt: skip
        console.print(ablation_table(headline(figures), ablated))
    console.print(f"list entries of the last run: {list_path}")
    console.print(f"[bold]done[/] in {time.perf_counter() - started:.1f} s; files in {folder}")
    return {
        "persons": persons, "days": days, "seed": seed, "scenarios": scenarios, "runs": len(ends),
        "seconds": round(time.perf_counter() - started, 1), **figures, "estimator": estimator,
        "integrity_leads": leads.to_dict("records"), "registry_feed": feed, "ablation": ablated,
        "folder": str(folder),
    }  # fmt: skip


def _print_figures(console: Console, figures: dict[str, Any]) -> None:
    """Print the cycles' figures against the truth."""
    table = Table(title="the monthly cycles against the simulation's truth")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("living people", f"{figures['living']:,}")
    table.add_row(
        "  certified silently (by data)", f"{figures['living_certified_silently_share']:.1%}"
    )
    if figures.get("runs_estimator"):
        table.add_row(
            "  certifications by the learned estimator", f"{figures['certified_by_estimator']:,}"
        )
    table.add_row("  wrongly suspended as dead", f"{figures['wrongful_suspensions']:,}")
    table.add_row(
        "  suspended after a failed review and notice",
        f"{figures['living_suspended_after_failed_review']:,}",
    )
    table.add_row(
        "  suspended while the agency's review was overdue (goal 0)",
        f"{figures['living_suspended_while_review_overdue']:,}",
    )
    table.add_row("people who died in the period", f"{figures['dead_in_period']:,}")
    table.add_row("  after the first run", f"{figures['dead_after_first_run']:,}")
    table.add_row("    of whom suspended", f"{figures['dead_after_first_run_suspended']:,}")
    for label, key in (
        ("with a death record", "with_death_record"),
        ("without a death record (found by review)", "without_death_record"),
        ("notified by the civil registry", "notified_by_registry"),
    ):
        spread = figures["death_to_suspension"][key]
        value = (
            "-"
            if not spread["suspended"]
            else f"{spread['suspended']:,}: median {spread['median_days']:.0f} d, "
            f"p95 {spread['p95_days']:.0f} d"
        )
        table.add_row(f"  death to suspension, {label}", value)
    table.add_row(
        "  dead and still paid at the end (goal 0)",
        f"{figures['dead_still_paid_at_end']:,} (of whom "
        f"{figures['dead_still_paid_at_end_died_last_60_days']:,} died in the last 60 days)",
    )
    table.add_row("reinstatements", f"{figures['reinstatements']:,}")
    workload = figures["review_workload"]
    table.add_row(
        "reviews per grid (mean / max)",
        f"{workload['reviews_per_grid_mean']} / {workload['reviews_per_grid_max']} "
        f"over {workload['grids']:,} grids",
    )
    table.add_row(
        "home visits per grid (mean / max)",
        f"{workload['visits_per_grid_mean']} / {workload['visits_per_grid_max']}",
    )
    bother = figures["bother"]
    # The roll's certifications fall due over a year: in the few months after a first run,
    # most of those due were its backlog, and the steady state shows only from about six.
    steady = "" if figures.get("runs", 0) > STEADY_RUNS else " (too few runs: see --months 6)"
    table.add_row(
        "reviews per 100 persons per 12 months (after the first run's backlog)",
        f"{bother['reviews_per_100_persons_per_cycle']}{steady}",
    )
    if bother.get("reviews_per_100_person_cycles_due") is not None:
        # A six-month cycle comes due twice a year: per cycle due, not per person-year.
        table.add_row(
            "  the same per 100 certification cycles that came due",
            f"{bother['reviews_per_100_person_cycles_due']}{steady}",
        )
    table.add_row(
        "the first run's backlog: its reviews and their follow-ups",
        f"{bother['backlog_reviews']:,}",
    )
    table.add_row(
        "notices the data overtook (certified by data before the review)",
        f"{bother['notices_to_persons_later_certified_by_data']:,} of {bother['notices']:,} "
        f"({bother['notices_to_persons_later_certified_by_data_share']:.1%} of the roll)",
    )
    table.add_row("review tasks closed by data", f"{bother['tasks_closed_by_data']:,}")
    table.add_row(
        "home visits per grid and week (mean / max)",
        f"{bother['visits_per_grid_week_mean']} / {bother['visits_per_grid_week_max']} "
        f"({bother['grid_weeks_over_capacity']:,} grid-weeks over capacity)",
    )
    console.print(table)
