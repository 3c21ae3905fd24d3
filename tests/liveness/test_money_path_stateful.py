"""The money path as a state machine under random histories (issues 13 and 20).

Hypothesis drives a small roll (3 to 6 persons with 1 or 2 benefits each, sometimes the first
of them under a second number too) through the engine's real entry points: deliveries of
every source (late, out of order, a day or two behind), deaths true and wrong, duplicates,
prison, face results, review outcomes, notices sent or not, runs forward, again and
backwards, approvals. After every run the feed is read as the payment system reads it and
checked against an independent model (`money_model`), which knows the truth of each person
and counts the money itself. See money_model.py for the invariants.

Examples per backend: `LIVENESS_STATEFUL_EXAMPLES` (default 30; CI derandomizes). Triage:
`LIVENESS_STATEFUL_SKIP` names invariants to note instead of fail (money_model.py), and
`LIVENESS_STATEFUL_SHRINK=0` reports failures unshrunk.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import shutil
import sqlite3
import tempfile
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

import liveness.certification.assessments as certification_assessments
import liveness.certification.partitioned as certification_partitioned
from connectors.spec import SOURCES
from liveness.access import gateways
from liveness.certification.assessments import _kept_standing, standing_assessments
from liveness.certification.runner import execute_run
from liveness.db import make_engine, session_scope
from liveness.errors import LivenessError, RunRefused
from liveness.ingest.runner import ingest_paths
from liveness.lists import approve_entry
from liveness.migrate import upgrade
from liveness.review import outcomes
from liveness.services import Services
from liveness.settings import Settings
from models import (
    Benefit,
    Certification,
    ListEntry,
    Notice,
    Person,
    ReviewTask,
    Run,
    assessments_as_of,
)
from tests.conftest import POSTGRES_ADMIN_URL
from tests.liveness import money_model as mm
from tests.liveness.money_model import (
    BenefitSpec,
    CertRow,
    DeathSource,
    DuplicateDeregistration,
    EntryRow,
    FaceResult,
    Ledger,
    NoticeRow,
    Outcome,
    PersonSpec,
    Proof,
    TaskRow,
    World,
    fail,
)

REPO = Path(__file__).resolve().parents[2]
TIMEZONE = ZoneInfo("Asia/Shanghai")
# Traces exist from here; the clock (the day the test acts on) starts a few months later and
# never passes the horizon, which stays before today (a run after today is refused).
TRACE_START = dt.date(2024, 10, 1)
CLOCK_START = dt.date(2025, 1, 20)
HORIZON = min(dt.date(2026, 10, 31), dt.datetime.now(TIMEZONE).date() - dt.timedelta(days=1))

# About 2.5 s an example on either backend (2 cores): 30 examples each keep both within about
# 3 minutes. More locally: LIVENESS_STATEFUL_EXAMPLES=200.
EXAMPLES = int(os.environ.get("LIVENESS_STATEFUL_EXAMPLES", "30"))
STEPS = int(os.environ.get("LIVENESS_STATEFUL_STEPS", "45"))
ON_CI = bool(os.environ.get("CI"))
# Triage aid: LIVENESS_STATEFUL_SHRINK=0 reports failures as found, without shrinking them.
SHRINK = os.environ.get("LIVENESS_STATEFUL_SHRINK", "1") != "0"

# On CI: the same examples every time (derandomize), no example database, and the first
# failure only, shrunk (Hypothesis gives up shrinking after about five minutes), so a broken
# money path costs CI minutes, not the whole budget. Locally every distinct failure is shrunk
# and the failing examples are replayed first on the next run.
MONEY_PATH_SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=ON_CI,
    database=None if ON_CI else settings.default.database,
    report_multiple_bugs=not ON_CI,
    print_blob=True,
    phases=[phase for phase in Phase if SHRINK or phase not in (Phase.shrink, Phase.explain)],
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
    ],
)  # fmt: skip

BENEFIT_TYPES = (
    "enterprise_pension", "resident_pension", "institution_pension", "work_injury_long_term",
    "survivor_pension",
)  # fmt: skip
HEADERS = {
    "registry": "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,"
    "benefit_start,region_code,grid_code,status,last_certified_on,phone",
    "cards": "card_no,card_kind,id_number,issued_on,cancelled_on",
    "transit": "record_id,card_no,tapped_at,city_code,face_match",
    "card_txn": "record_id,card_no,txn_at,channel",
    "medical": "record_id,id_number,name,visit_at,institution_code,visit_type,discharge_outcome",
    "face": "record_id,id_number,verified_at,result,channel,request_id",
    "cremation": "record_id,id_number,name,sex,birth_date,died_on,cremated_on",
    "deregistration": "record_id,id_number,name,deregistered_on,reason,died_on,new_id_number",
}
# Each source's files are written in the encoding its configuration names (cremation: GB18030).
ENCODINGS = {
    source: table.get("encoding", "utf-8")
    for source, table in tomllib.loads((REPO / "config" / "sources.toml").read_text()).items()
}
# What follows a run at once: nothing, a run as of the same date, or a second operator
# approving the reinstatements it held (before any payment day passes).
THEN = st.sampled_from(("nothing", "nothing", "rerun", "approve"))
VISIT_OUTCOMES_ALIVE = ("alive_confirmed", "in_hospital", "not_found", "moved_away", "refused")


# What the histories exercised, printed at the end of the test (pytest -s shows it).
COVERAGE: Counter[str] = Counter()


def event(name: str) -> None:
    """Count one thing a history exercised."""
    COVERAGE[name] += 1


def supports_voids(source: str) -> bool:
    """Say whether a source's reference format carries `voided` (the ingest work on main)."""
    return "voided" in SOURCES[source].column_names


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Return the days first..last."""
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


# ---------------------------------------------------------------------------------------------
# A migrated database per example, copied from a template (a migration per example is slow).


class DatabaseTemplate:
    """A migrated database of one backend that each example copies."""

    def __init__(self, backend: str, database_url_factory: Callable[[str], str], folder: Path):
        self.backend = backend
        self.folder = folder
        self.url = database_url_factory(backend)
        engine = make_engine(self.url)
        upgrade(engine)
        engine.dispose()
        self.admin = None
        if backend == "sqlite":
            path = make_url(self.url).database
            assert path is not None
            with sqlite3.connect(path) as connection:
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.path = Path(path)
        else:
            self.admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            self.name = make_url(self.url).database

    def fresh(self) -> tuple[str, Callable[[], None]]:
        """Return the URL of a fresh copy, and how to drop it."""
        if self.admin is None:
            copy = self.folder / f"{uuid.uuid4().hex[:12]}.sqlite"
            shutil.copyfile(self.path, copy)
            return f"sqlite:///{copy}", lambda: copy.unlink(missing_ok=True)
        name = f"{self.name}_{uuid.uuid4().hex[:8]}"
        admin = self.admin
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"'))

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        return make_url(self.url).set(database=name).render_as_string(False), drop

    def close(self) -> None:
        """Release the administrative connection."""
        if self.admin is not None:
            self.admin.dispose()


# ---------------------------------------------------------------------------------------------
# The roll Hypothesis draws.


@st.composite
def rolls(draw: st.DrawFn) -> list[PersonSpec]:
    """Draw 3 to 6 persons with 1 or 2 benefits each, maybe one person under two numbers."""
    persons: list[PersonSpec] = []
    for index in range(draw(st.integers(3, 6))):
        types = draw(st.lists(st.sampled_from(BENEFIT_TYPES), min_size=1, max_size=2, unique=True))
        benefits = [
            BenefitSpec(
                benefit_type=kind,
                amount=Decimal(draw(st.integers(30_000, 900_099))) / 100,
                start=dt.date(
                    draw(st.integers(2008, 2021)),
                    draw(st.integers(1, 12)),
                    draw(st.sampled_from((1, 10, 20))),
                ),
            )
            for kind in types
        ]
        sex = draw(st.sampled_from("MF"))
        birth = dt.date(draw(st.integers(1935, 1962)), draw(st.integers(1, 12)), 1 + index)
        region = mm.OUT_OF_AREA_REGION if draw(st.integers(0, 4)) == 0 else mm.IN_AREA_REGION
        persons.append(
            PersonSpec(
                ref=f"P{index + 1}",
                id_number=mm.id_number("330702", birth, index + 1, sex),
                name=mm.NAMES[index], sex=sex, birth=birth, region=region,
                grid=f"G{index % 2 + 1}", phone="13800000000" if draw(st.booleans()) else None,
                last_certified=CLOCK_START - dt.timedelta(days=draw(st.integers(250, 420))),
                benefits=benefits, transit_card=f"TS{index + 1}", citizen_card=f"CZ{index + 1}",
                offset=draw(st.integers(0, 29)),
                profiles=[(TRACE_START, draw(st.sampled_from(("strong", "medium", "weak"))))],
            )
        )  # fmt: skip
    if draw(st.booleans()):
        # The same human under a second number, drawing the same benefit again, started later.
        original = persons[0]
        first = original.benefits[0]
        persons.append(
            PersonSpec(
                ref=f"P{len(persons) + 1}",
                id_number=mm.id_number("330703", original.birth, 77, original.sex),
                name=original.name, sex=original.sex, birth=original.birth,
                region=original.region, grid=original.grid, phone=None,
                last_certified=original.last_certified,
                benefits=[BenefitSpec(first.benefit_type, first.amount,
                                      dt.date(2022, draw(st.integers(1, 12)), 1))],
                transit_card="", citizen_card="", offset=original.offset,
                profiles=[(TRACE_START, "weak")], duplicate_of=original.ref,
            )
        )  # fmt: skip
    if draw(st.integers(0, 3)) == 0:
        # A benefit the agency itself suspended before it arrived: outside the machine.
        persons[-1].benefits.append(
            BenefitSpec("unemployment", Decimal("1234.56"), dt.date(2020, 5, 1), "suspended")
        )
    return persons


# ---------------------------------------------------------------------------------------------
# The machine.


class MoneyPath(RuleBasedStateMachine):
    """Random histories of a small roll, checked against the model after every run."""

    template: DatabaseTemplate

    persons = Bundle("persons")
    wrong_records = Bundle("wrong_records")
    wrong_reviews = Bundle("wrong_reviews")
    duplicates = Bundle("duplicates")

    def __init__(self) -> None:
        super().__init__()
        self.url, self.drop = self.template.fresh()
        self.folder = Path(tempfile.mkdtemp(prefix="money-path-", dir=self.template.folder))
        self.services = Services(
            Settings(
                database_url=self.url, evidence_dir=self.folder / "evidence",
                config_dir=REPO / "config",
            )
        )  # fmt: skip
        self.world = World([])
        self.clock = CLOCK_START
        self.files = 0
        self.record_ids = 0
        self.last_run: dt.date | None = None
        self.last_run_seq = -1
        self.previous_run_seq = 0
        self.answered: set[int] = set()
        # Every run's grades as grading made them, caught before the run stores what changed:
        # the levels each published run stands for must read back as these, run after run.
        self.graded: dict[int, dict[int, tuple[str, str]]] = {}
        self.write_assessments = certification_assessments.write_assessments

        def spy(session: Any, *, run_id: int, assessed: Any, **kwargs: Any) -> Any:
            # A run by ranges writes each range's: the run's grades are all of them.
            self.graded.setdefault(run_id, {}).update(
                {
                    int(p): (str(level), str(rule))
                    for p, level, rule in zip(
                        assessed["person_id"], assessed["level"], assessed["rule"], strict=True
                    )
                }
            )
            return self.write_assessments(session, run_id=run_id, assessed=assessed, **kwargs)

        certification_assessments.write_assessments = spy  # type: ignore[assignment]
        certification_partitioned.write_assessments = spy  # type: ignore[assignment]

    def teardown(self) -> None:
        """Drop the example's database and files."""
        event(f"runs: {len(self.world.runs) // 4 * 4}+")
        event(f"days covered: {(self.clock - CLOCK_START).days // 100 * 100}+")
        certification_assessments.write_assessments = self.write_assessments  # type: ignore[assignment]
        certification_partitioned.write_assessments = self.write_assessments  # type: ignore[assignment]
        self.services.engine.dispose()
        self.drop()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- deliveries ------------------------------------------------------------------------

    def deliver(self, source: str, rows: list[str], header: str | None = None) -> None:
        """Write rows as one delivery file in the reference format and ingest it."""
        self.files += 1
        path = self.folder / f"{source}_{self.files:04d}.csv"
        body = (header or HEADERS[source]) + "\n" + "".join(row + "\n" for row in rows)
        path.write_bytes(body.encode(ENCODINGS.get(source, "utf-8")))
        (report,) = ingest_paths(self.services, source=source, paths=[path])
        assert report.error is None and report.quarantined == 0, (source, report, body[:2000])

    def deliver_death_of(
        self, person: mm.PersonSpec, name: str, source: str, rid: str, days_ago: int
    ) -> tuple[dt.date, dt.date]:
        """Deliver a record of a death days ago, recorded two days later; return both days."""
        died = self.clock - dt.timedelta(days=days_ago)
        recorded = min(died + dt.timedelta(days=2), self.clock)
        if source == "cremation":
            row = f"{rid},{person.id_number},{name},{person.sex},{person.birth},{died},{recorded}"
        else:
            row = f"{rid},{person.id_number},{name},{recorded},death,{died},"
        self.deliver(source, [row])
        return died, recorded

    def next_record_id(self, prefix: str) -> str:
        self.record_ids += 1
        return f"{prefix}{self.record_ids}"

    def registry_rows(self, statuses: dict[tuple[str, str], str] | None = None) -> list[str]:
        rows = []
        for p in self.world.persons.values():
            for b in p.benefits:
                status = (statuses or {}).get((p.ref, b.benefit_type), b.roll_status)
                rows.append(
                    f"{p.ref},{p.id_number},{p.name},{p.sex},{p.birth},{b.benefit_type},"
                    f"{b.amount:.2f},{b.start},{p.region},{p.grid},{status},"
                    f"{p.last_certified},{p.phone or ''}"
                )
        return rows

    def deliver_cards(self) -> None:
        rows = []
        for p in self.world.persons.values():
            if p.transit_card:
                rows.append(f"{p.transit_card},transit_senior,{p.id_number},2020-01-01,")
                rows.append(f"{p.citizen_card},citizen,{p.id_number},2020-01-01,")
        self.deliver("cards", rows)

    def trace_rows(self, source: str, first: dt.date, last: dt.date) -> list[str]:
        """Return the traces of `source` the living, free persons left on days first..last."""
        rows = []
        for day in days(first, last):
            for p in self.world.persons.values():
                if not p.free_and_alive(day):
                    continue
                for src, kind, every in mm.PROFILES[p.profile_on(day)]:
                    if src != source or (day.toordinal() + p.offset) % every:
                        continue
                    rid = f"{source[:2]}-{p.ref}-{day:%Y%m%d}"
                    if source == "transit" and p.transit_card:
                        rows.append(f"{rid},{p.transit_card},{day} 08:15:00,330700,true")
                    elif source == "card_txn" and p.citizen_card:
                        rows.append(f"{rid},{p.citizen_card},{day} 12:30:00,{kind}")
                    elif source == "medical":
                        rows.append(f"{rid},{p.id_number},{p.name},{day} 09:00:00,H001,{kind},")
            if source == "transit":
                rows += [
                    f"bg-{day:%Y%m%d}-{k},BG{k},{day} 07:{k % 60:02d}:00,330700,"
                    for k in range(mm.BACKGROUND_TAPS_PER_DAY)
                ]
        return rows

    def deliver_traces_until(self, source: str, last: dt.date) -> None:
        first = self.world.delivered_through.get(source, TRACE_START - dt.timedelta(days=1))
        first += dt.timedelta(days=1)
        if last < first:
            return
        rows = self.trace_rows(source, first, last)
        if rows:
            self.deliver(source, rows)
        self.world.delivered_through[source] = last

    def last_sign_of_life(self, person: PersonSpec) -> dt.date:
        """Return the last day anything delivered or recorded shows the person alive."""
        last = TRACE_START
        for source in mm.TRACE_SOURCES:
            through = self.world.delivered_through.get(source, TRACE_START)
            for day in reversed(days(TRACE_START, through)):
                active = [
                    s for s, _, every in mm.PROFILES[person.profile_on(day)]
                    if s == source and (day.toordinal() + person.offset) % every == 0
                ]  # fmt: skip
                if active and person.free_and_alive(day):
                    last = max(last, day)
                    break
        for proof in self.world.proofs:
            if proof.person == person.ref:
                last = max(last, proof.day)
        return last

    # -- reading the engine ------------------------------------------------------------------

    def read_engine(self) -> tuple[list[EntryRow], dict[int, str]]:
        """Read new list entries, tasks, notices, certifications and benefit statuses."""
        world = self.world
        with session_scope(self.services.sessions) as session:
            entries = [
                EntryRow(
                    id=e.id, seq=e.seq, run_id=e.run_id, person_id=e.person_id,
                    benefit_id=e.benefit_id, action=str(e.action), reason=str(e.reason),
                    event=str(e.event) if e.event else None, effective_on=e.effective_on,
                    amount=Decimal(e.amount), status=str(e.status), detail=dict(e.detail or {}),
                    caused_by=e.caused_by, approved_by=e.approved_by,
                )
                for e in session.scalars(
                    select(ListEntry).where(ListEntry.seq > world.last_seq_seen)
                    .order_by(ListEntry.seq)
                )
            ]  # fmt: skip
            world.tasks = {
                t.id: TaskRow(
                    id=t.id, person_id=t.person_id, kind=str(t.kind), status=str(t.status),
                    opened_on=t.opened_on, due_on=t.due_on, opened_run_id=t.opened_run_id,
                    outcome=t.outcome, reasons=dict(t.reasons or {}),
                )
                for t in session.scalars(select(ReviewTask))
            }  # fmt: skip
            world.notices = {
                n.id: NoticeRow(
                    id=n.id, person_id=n.person_id, task_id=n.task_id, template=n.template,
                    created_on=n.created_on, status=str(n.status),
                )
                for n in session.scalars(select(Notice))
            }  # fmt: skip
            world.certs = {
                c.id: CertRow(
                    id=c.id, person_id=c.person_id, source=str(c.source),
                    certified_on=c.certified_on, valid_until=c.valid_until, run_id=c.run_id,
                )
                for c in session.scalars(select(Certification))
            }  # fmt: skip
            statuses = {
                bid: str(status)
                for bid, status in session.execute(select(Benefit.id, Benefit.status))
            }
        if entries:
            world.last_seq_seen = entries[-1].seq
        return entries, statuses

    def check_statuses(self, statuses: dict[int, str], when: str) -> None:
        for ledger in self.world.ledgers.values():
            expected = ledger.engine_status
            if ledger.outside:
                expected = ledger.reason or "suspended"
            if statuses.get(ledger.benefit_id) != expected:
                fail(mm.I1_STATUS, f"{ledger.person}/{ledger.benefit_type} {when}: the feed "
                                   f"replays to {ledger.describe()}, Benefit.status is "
                                   f"{statuses.get(ledger.benefit_id)}")  # fmt: skip

    def map_roll(self) -> None:
        with session_scope(self.services.sessions) as session:
            ids = dict(session.execute(select(Person.person_ref, Person.id)).all())
            benefits = session.execute(
                select(Benefit.id, Benefit.person_id, Benefit.benefit_type)
            ).all()
        world = self.world
        world.person_ids = {ref: ids[ref] for ref in world.persons}
        world.refs = {pid: ref for ref, pid in world.person_ids.items()}
        for benefit_id, person_id, benefit_type in benefits:
            person = world.persons[world.refs[person_id]]
            spec = next(b for b in person.benefits if b.benefit_type == str(benefit_type))
            world.ledgers[benefit_id] = Ledger(
                benefit_id=benefit_id, person=person.ref, benefit_type=spec.benefit_type,
                amount=spec.amount, start=spec.start, outside=spec.roll_status != "active",
                reason=spec.roll_status if spec.roll_status != "active" else None,
            )  # fmt: skip

    # -- the roll ------------------------------------------------------------------------------

    @initialize(
        target=persons, roll=rolls(),
        order=st.sampled_from(("registry_first", "cards_first", "traces_first")),
        lag=st.integers(0, 2),
    )  # fmt: skip
    def setup(self, roll: list[PersonSpec], order: str, lag: int) -> Any:
        """Deliver the roll, the cards and the first traces, in a drawn order."""
        self.world = World(roll)
        steps = {
            "registry_first": ("registry", "cards", "traces"),
            "cards_first": ("cards", "registry", "traces"),
            "traces_first": ("traces", "cards", "registry"),
        }[order]
        for step in steps:
            if step == "registry":
                self.deliver("registry", self.registry_rows())
                self.map_roll()
            elif step == "cards":
                self.deliver_cards()
            else:
                for source in mm.TRACE_SOURCES:
                    self.deliver_traces_until(source, CLOCK_START - dt.timedelta(days=lag))
        return multiple(*[p.ref for p in roll])

    # -- time and traces ---------------------------------------------------------------------

    @precondition(lambda self: self.clock < HORIZON)
    @rule(n=st.integers(1, 20))
    def pass_days(self, n: int) -> None:
        """Let days pass without a run."""
        self.clock = min(self.clock + dt.timedelta(days=n), HORIZON)

    @rule(source=st.sampled_from(mm.TRACE_SOURCES), lag=st.integers(0, 2))
    def deliver_traces(self, source: str, lag: int) -> None:
        """Deliver a source's traces up to a day or two before today."""
        self.world.step()
        self.deliver_traces_until(source, self.clock - dt.timedelta(days=lag))

    @rule(ref=persons, profile=st.sampled_from(("strong", "medium", "weak")))
    def change_activity(self, ref: str, profile: str) -> None:
        """A person becomes more or less active from tomorrow."""
        person = self.world.persons[ref]
        if person.duplicate_of is None:
            person.profiles.append((self.clock + dt.timedelta(days=1), profile))

    # -- the truth: deaths, prison ----------------------------------------------------------------

    def eligible(self, test: Callable[[PersonSpec], bool]) -> list[str]:
        """Return the persons for whom a rule makes sense now, in roll order."""
        return [p.ref for p in self.world.persons.values() if test(p)]

    def may_die(self, person: PersonSpec) -> bool:
        """Say whether a person may die now (not one of the pair under two numbers)."""
        pair = person.duplicate_of or any(
            p.duplicate_of == person.ref for p in self.world.persons.values()
        )
        return person.died_on is None and not pair

    def unreported_deaths(self, person: PersonSpec) -> list[str]:
        """Return the death sources that have not yet reported a person's true death."""
        if person.died_on is None:
            return []
        reported = {d.source for d in self.world.deaths if d.person == person.ref and not d.wrong}
        return [s for s in ("cremation", "deregistration", "medical") if s not in reported]

    @precondition(lambda self: self.eligible(self.may_die))
    @rule(data=st.data(), days_before=st.integers(0, 40), lag=st.integers(0, 15),
          reported_by=st.sampled_from(("cremation", "deregistration", "medical", "nobody")))  # fmt: skip
    def die(self, data: st.DataObject, days_before: int, lag: int, reported_by: str) -> None:
        """Someone dies; a department may report it at once, or nobody (a rural burial: until
        a record or a visit says so)."""
        ref = data.draw(st.sampled_from(self.eligible(self.may_die)), label="person")
        person = self.world.persons[ref]
        died_on = max(
            self.clock - dt.timedelta(days=days_before),
            self.last_sign_of_life(person) + dt.timedelta(days=1),
        )
        if died_on > self.clock:
            return
        self.world.step()
        person.died_on = died_on
        if reported_by != "nobody":
            self.report_death(person, reported_by, lag=lag, with_number=True, with_death_date=True)

    @precondition(lambda self: self.eligible(self.unreported_deaths))
    @rule(data=st.data(), lag=st.integers(0, 15), with_number=st.booleans(),
          with_death_date=st.booleans())  # fmt: skip
    def deliver_death_record(
        self, data: st.DataObject, lag: int, with_number: bool, with_death_date: bool
    ) -> None:
        """A department delivers the true death record of someone who died."""
        ref = data.draw(st.sampled_from(self.eligible(self.unreported_deaths)), label="person")
        person = self.world.persons[ref]
        source = data.draw(st.sampled_from(self.unreported_deaths(person)), label="source")
        self.report_death(
            person, source, lag=lag, with_number=with_number, with_death_date=with_death_date
        )

    def report_death(
        self, person: PersonSpec, source: str, *, lag: int, with_number: bool,
        with_death_date: bool,
    ) -> None:  # fmt: skip
        """Deliver a true death record of a source, `lag` days after the death at most."""
        ref = person.ref
        died = person.died_on
        assert died is not None
        seq = self.world.step()
        rid = self.next_record_id(source[:2].upper())
        recorded = min(died + dt.timedelta(days=lag), self.clock)
        number = person.id_number if with_number or source == "medical" else ""
        if source == "cremation":
            cremated = min(died + dt.timedelta(days=1 + lag), self.clock)
            recorded = cremated
            row = f"{rid},{number},{person.name},{person.sex},{person.birth},{died},{cremated}"
        elif source == "deregistration":
            number = person.id_number
            death_date = str(died) if with_death_date else ""
            row = f"{rid},{number},{person.name},{recorded},death,{death_date},"
            if not with_death_date:
                died = recorded  # the deregistration's date is the safe bound
        else:
            recorded = died
            row = f"{rid},{number},{person.name},{died} 06:00:00,H002,inpatient_discharge,deceased"
        self.deliver(source, [row])
        self.world.deaths.append(DeathSource(source, rid, ref, died, recorded, seq, wrong=False))
        event(f"true death record: {source}")

    @rule(
        target=wrong_records, ref=persons, source=st.sampled_from(("cremation", "deregistration")),
        days_ago=st.integers(1, 60),
    )  # fmt: skip
    def plant_wrong_death(self, ref: str, source: str, days_ago: int) -> Any:
        """A department reports a living person dead (number and name agree): a wrong record."""
        person = self.world.persons[ref]
        if not person.alive_on(self.clock):
            return multiple()
        seq = self.world.step()
        rid = self.next_record_id("W")
        died, recorded = self.deliver_death_of(person, person.name, source, rid, days_ago)
        event("wrong death record")
        death = DeathSource(source, rid, ref, died, recorded, seq, wrong=True)
        self.world.deaths.append(death)
        return death

    @rule(ref=persons, source=st.sampled_from(("cremation", "deregistration")),
          days_ago=st.integers(1, 60), other=st.sampled_from(mm.OTHER_NAMES))  # fmt: skip
    def plant_name_mismatch(self, ref: str, source: str, days_ago: int, other: str) -> None:
        """A death record carries this person's number under another name: a death review."""
        person = self.world.persons[ref]
        seq = self.world.step()
        rid = self.next_record_id("M")
        died, recorded = self.deliver_death_of(person, other, source, rid, days_ago)
        self.world.deaths.append(
            DeathSource(source, rid, ref, died, recorded, seq, wrong=True, mismatch=True)
        )

    def _redeliver_record(self, death: DeathSource, *, voided: bool) -> None:
        """Deliver a correction of a wrong record: voided, or naming someone off the roll."""
        person = self.world.persons[death.person]
        if voided:
            number, name = person.id_number, person.name
        else:
            number = mm.id_number("110101", dt.date(1950, 1, 1), 5, "F")
            name = "王某"
        extra = ",correction,voided" if voided else ",correction"
        flags = ",true,true" if voided else ",true"
        if death.source == "cremation":
            row = f"{death.key},{number},{name},,,{death.died_on},{death.recorded_on}"
        else:
            row = f"{death.key},{number},{name},{death.recorded_on},death,{death.died_on},"
        self.deliver(death.source, [row + flags], header=HEADERS[death.source] + extra)
        death.withdrawn_seq = self.world.seq

    @precondition(lambda self: supports_voids("cremation"))
    @rule(death=consumes(wrong_records))
    def void_wrong_death(self, death: DeathSource) -> None:
        """The department voids its wrong record (voided=true, correction=true)."""
        self.world.step()
        self._redeliver_record(death, voided=True)

    @rule(death=consumes(wrong_records))
    def correct_wrong_death_away(self, death: DeathSource) -> None:
        """The department corrects its wrong record to someone who is not on the roll."""
        self.world.step()
        self._redeliver_record(death, voided=False)

    @rule(target=duplicates, variant=st.sampled_from(("named", "original_cancelled",
                                                      "plain", "moved_out")))  # fmt: skip
    def deliver_duplicate_deregistration(self, variant: str) -> Any:
        """The police reveal one person under two numbers."""
        pairs = [p for p in self.world.persons.values() if p.duplicate_of]
        if not pairs or any(d.voided_seq is None for d in self.world.duplicates):
            return multiple()
        twin = pairs[0]
        original = self.world.persons[twin.duplicate_of or ""]
        seq = self.world.step()
        rid = self.next_record_id("D")
        on = self.clock - dt.timedelta(days=1)
        rows = {
            "named": f"{rid},{twin.id_number},{twin.name},{on},duplicate,,{original.id_number}",
            "original_cancelled": f"{rid},{original.id_number},{original.name},{on},duplicate,,"
            f"{twin.id_number}",
            "plain": f"{rid},{twin.id_number},{twin.name},{on},duplicate,,",
            "moved_out": f"{rid},{original.id_number},{original.name},{on},moved_out,,"
            f"{twin.id_number}",
        }
        self.deliver("deregistration", [rows[variant]])
        record = DuplicateDeregistration(
            rid, original.ref, twin.ref, twin.benefits[0].benefit_type, seq
        )
        self.world.duplicates.append(record)
        event(f"duplicate deregistration: {variant}")
        return record

    @precondition(lambda self: supports_voids("deregistration"))
    @rule(record=consumes(duplicates))
    def void_duplicate_deregistration(self, record: DuplicateDeregistration) -> None:
        """The police void the duplicate deregistration."""
        self.world.step()
        twin = self.world.persons[record.duplicate]
        row = f"{record.record_id},{twin.id_number},{twin.name},{self.clock},duplicate,,,true,true"
        self.deliver(
            "deregistration", [row], header=HEADERS["deregistration"] + ",correction,voided"
        )
        record.voided_seq = self.world.seq

    def may_go_to_prison(self, person: PersonSpec) -> bool:
        """Say whether a person may be imprisoned now (not one of the pair, not already)."""
        return (
            self.may_die(person) and not self.in_prison(person)
            and person.free_and_alive(self.clock)
        )  # fmt: skip

    def in_prison(self, person: PersonSpec) -> bool:
        """Say whether a person is in prison with no release set."""
        return bool(person.prison) and person.prison[-1][1] is None

    @precondition(lambda self: self.eligible(self.may_go_to_prison))
    @rule(data=st.data())
    def imprison(self, data: st.DataObject) -> None:
        """Someone goes to prison tomorrow."""
        ref = data.draw(st.sampled_from(self.eligible(self.may_go_to_prison)), label="person")
        self.world.step()
        event("imprisoned")
        self.world.persons[ref].prison.append([self.clock + dt.timedelta(days=1), None])

    @precondition(lambda self: self.eligible(self.in_prison))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Someone leaves prison today."""
        ref = data.draw(st.sampled_from(self.eligible(self.in_prison)), label="person")
        person = self.world.persons[ref]
        self.world.step()
        person.prison[-1][1] = max(self.clock, person.prison[-1][0])  # type: ignore[type-var]

    # -- face verification -------------------------------------------------------------------------

    def open_tasks(self, kind: str) -> list[mm.TaskRow]:
        return sorted(
            (
                t for t in self.world.tasks.values()
                if t.kind == kind and t.status in ("open", "claimed") and t.id not in self.answered
            ),
            key=lambda t: t.id,
        )  # fmt: skip

    def _face(self, ref: str, day: dt.date, result: str, channel: str, task: int | None) -> None:
        person = self.world.persons[ref]
        seq = self.world.step()
        rid = self.next_record_id("F")
        request = str(task) if task is not None else ""
        self.deliver(
            "face", [f"{rid},{person.id_number},{day} 10:00:00,{result},{channel},{request}"]
        )
        self.world.face_results.append(FaceResult(ref, day, result, channel, task, seq))
        event(f"face {result} {'asked' if task is not None else 'unasked'}")
        if result == "pass":
            kind = "face_own" if channel in mm.OWN_FACE_CHANNELS else "face_proxy"
            self.world.proofs.append(Proof(ref, day, kind, seq))

    @precondition(lambda self: self.open_tasks("face_verification"))
    @rule(data=st.data(), lag=st.integers(0, 2), passed=st.booleans(),
          channel=st.sampled_from(("app", "kiosk", "proxy")))  # fmt: skip
    def answer_face_request(
        self, data: st.DataObject, lag: int, passed: bool, channel: str
    ) -> None:
        """The person answers a face verification request (a day or two before delivery)."""
        task = data.draw(st.sampled_from(self.open_tasks("face_verification")))
        ref = self.world.refs[task.person_id]
        day = max(task.opened_on, self.clock - dt.timedelta(days=lag))
        can_pass = self.world.persons[ref].free_and_alive(day)
        self.answered.add(task.id)
        self._face(ref, day, "pass" if passed and can_pass else "fail", channel, task.id)

    @rule(ref=persons, lag=st.integers(0, 2), channel=st.sampled_from(("app", "kiosk", "proxy")))
    def verify_face_unasked(self, ref: str, lag: int, channel: str) -> None:
        """A person verifies their face on their own initiative."""
        day = self.clock - dt.timedelta(days=lag)
        if self.world.persons[ref].free_and_alive(day):
            self._face(ref, day, "pass", channel, None)

    # -- reviews -------------------------------------------------------------------------------------

    def _record(self, task: mm.TaskRow, outcome: str, died_on: dt.date | None = None,
                wrong: bool = False) -> Outcome:  # fmt: skip
        ref = self.world.refs[task.person_id]
        person = self.world.persons[ref]
        seq = self.world.step()
        with session_scope(self.services.sessions) as session:
            outcomes.record_outcome(
                session, task_id=task.id, outcome=outcome, actor=f"worker-{person.grid}",
                on=self.clock, died_on=died_on,
                region=mm.OUT_OF_AREA_REGION if outcome == "moved_away" else None,
            )  # fmt: skip
        self.answered.add(task.id)
        event(f"outcome {task.kind}: {outcome}{' (in error)' if wrong else ''}")
        recorded = Outcome(task.id, ref, task.kind, outcome, self.clock, seq, died_on)
        self.world.outcomes[task.id] = recorded
        if outcome in ("alive_confirmed", "in_hospital"):
            self.world.proofs.append(Proof(ref, self.clock, "review", seq))
        if outcome == "deceased" and died_on is not None:
            self.world.deaths.append(
                DeathSource("review", str(task.id), ref, died_on, self.clock, seq, wrong=wrong)
            )
        if task.kind == "death_review" and outcome in ("alive_confirmed", "not_a_death"):
            key = mm.review_record_key(task.reasons)
            for death in self.world.deaths:
                if death.mismatch and death.person == ref and (key is None or death.key == key[1]):
                    death.settled_seq = seq
        return recorded

    @precondition(lambda self: self.open_tasks("home_visit") or self.open_tasks("death_review"))
    @rule(target=wrong_reviews, data=st.data(), days_ago=st.integers(0, 20))
    def record_review(self, data: st.DataObject, days_ago: int) -> Any:
        """A grid worker records what a visit or a death review found: truthfully, except for
        the rare `deceased` recorded in error for a living person (a supervisor may correct it)."""
        task = data.draw(
            st.sampled_from(self.open_tasks("home_visit") + self.open_tasks("death_review"))
        )
        person = self.world.persons[self.world.refs[task.person_id]]
        visit = task.kind == "home_visit"
        if not person.alive_on(self.clock):
            choices: tuple[str, ...] = ("deceased", "not_found" if visit else "not_a_death")
        elif visit and person.in_prison_on(self.clock):
            choices = ("imprisoned", "not_found", "deceased in error")
        elif visit:
            choices = (*VISIT_OUTCOMES_ALIVE, "deceased in error")
        else:
            choices = ("alive_confirmed", "not_a_death", "deceased in error")
        outcome = data.draw(st.sampled_from(choices))
        if outcome == "deceased in error":
            return self._record(
                task, "deceased", self.clock - dt.timedelta(days=days_ago), wrong=True
            )
        self._record(task, outcome, person.died_on if outcome == "deceased" else None)
        return multiple()

    @rule(recorded=consumes(wrong_reviews), confirm=st.booleans())
    def supervisor_corrects_deceased(self, recorded: Outcome, confirm: bool) -> None:
        """A supervisor corrects a `deceased` recorded in error."""
        seq = self.world.step()
        if recorded.kind == "home_visit":
            outcome = "alive_confirmed" if confirm else "not_found"
        else:
            outcome = "alive_confirmed" if confirm else "not_a_death"
        with session_scope(self.services.sessions) as session:
            outcomes.correct_outcome(
                session, task_id=recorded.task_id, outcome=outcome, actor="supervisor-1",
                on=self.clock, note="recorded deceased in error",
            )  # fmt: skip
        event(f"supervisor corrected deceased to {outcome}")
        for death in self.world.deaths:
            if death.source == "review" and death.key == str(recorded.task_id):
                death.withdrawn_seq = seq
        if outcome == "alive_confirmed":
            # The visit, as corrected, found the person alive on its own day.
            self.world.proofs.append(Proof(recorded.person, recorded.on, "review", seq))

    # -- notices ----------------------------------------------------------------------------------------

    def pending_notices(self) -> list[NoticeRow]:
        return sorted(
            (n for n in self.world.notices.values() if n.id not in self.world.sent),
            key=lambda n: n.id,
        )

    @precondition(lambda self: self.pending_notices())
    @rule(data=st.data(), letter=st.booleans())
    def send_notice(self, data: st.DataObject, letter: bool) -> None:
        """The notifier sends a pending notice (or staff record a letter)."""
        notice = data.draw(st.sampled_from(self.pending_notices()))
        seq = self.world.step()
        sent_at = dt.datetime.combine(self.clock, dt.time(10, 0), tzinfo=TIMEZONE)
        options: dict[str, Any] = {}
        if letter and "channel" in inspect.signature(gateways.mark_notice_sent).parameters:
            options["channel"] = "letter"
        with session_scope(self.services.sessions) as session:
            gateways.mark_notice_sent(session, notice_id=notice.id, sent_at=sent_at, **options)
        self.world.sent[notice.id] = (self.clock, seq)
        event(f"notice sent: {notice.template}")

    # -- approvals -------------------------------------------------------------------------------------

    def held(self, *, superseded: bool) -> list[Ledger]:
        ledgers = []
        for ledger in self.world.ledgers.values():
            held = ledger.held
            if held is None or held.superseded != superseded:
                continue
            # Approved before the next payment day: no payment falls between hold and approval.
            if not superseded and mm.payment_days_in(held.run_as_of, self.clock):
                continue
            ledgers.append(ledger)
        return sorted(ledgers, key=lambda x: x.benefit_id)

    def _approve(self, ledger: Ledger, operator: str) -> bool:
        assert ledger.held is not None
        self.world.step()
        try:
            with session_scope(self.services.sessions) as session:
                approve_entry(session, entry_id=ledger.held.entry_id, operator=operator)
        except LivenessError:
            return False
        return True

    def observe_approval(self) -> None:
        entries, statuses = self.read_engine()
        for entry in entries:
            event(f"approval entry {entry.action}/{entry.reason}")
            self.world.apply_entry(entry, as_of=self.clock, run_seq=self.world.seq + 1, run_id=-1)
        self.check_statuses(statuses, "after an approval")

    def approve(self, ledger: Ledger) -> None:
        """Approve a held reinstatement as a second operator; it must be accepted."""
        held = ledger.held
        assert held is not None
        if not self._approve(ledger, "supervisor-2"):
            fail(mm.APPROVAL, f"the approval of held entry #{held.seq} ({ledger.person}/"
                              f"{ledger.benefit_type}) by a second operator was refused")  # fmt: skip
            held.superseded = True  # skipped (triage): it cannot be approved, forget it
            return
        self.observe_approval()

    @precondition(lambda self: self.held(superseded=False))
    @rule(data=st.data())
    def approve_held(self, data: st.DataObject) -> None:
        """A second operator approves a held reinstatement."""
        self.approve(data.draw(st.sampled_from(self.held(superseded=False))))

    @precondition(lambda self: self.held(superseded=False))
    @rule(data=st.data())
    def approve_own_entry(self, data: st.DataObject) -> None:
        """Whoever caused a held reinstatement tries to approve it: refused."""
        ledger = data.draw(st.sampled_from(self.held(superseded=False)))
        assert ledger.held is not None
        if self._approve(ledger, ledger.held.caused_by):
            fail(mm.APPROVAL, f"{ledger.held.caused_by} approved their own held entry "
                              f"#{ledger.held.seq}")  # fmt: skip
            self.observe_approval()

    @precondition(lambda self: self.held(superseded=True))
    @rule(data=st.data())
    def approve_superseded(self, data: st.DataObject) -> None:
        """A held reinstatement superseded by a death can no longer be approved."""
        ledger = data.draw(st.sampled_from(self.held(superseded=True)))
        assert ledger.held is not None
        if self._approve(ledger, "supervisor-2"):
            fail(mm.APPROVAL, f"held entry #{ledger.held.seq} of {ledger.person}/"
                              f"{ledger.benefit_type} was approved after a death superseded "
                              f"it")  # fmt: skip
            self.observe_approval()

    # -- the roll again --------------------------------------------------------------------------------

    @rule(data=st.data())
    def redeliver_registry(self, data: st.DataObject) -> None:
        """The roll arrives again, its statuses changed: the payment status must not follow."""
        self.world.step()
        statuses = {
            (p.ref, b.benefit_type): data.draw(
                st.sampled_from(("active", "suspended", "terminated")), label=f"{p.ref}"
            )
            for p in self.world.persons.values()
            for b in p.benefits
        }
        self.deliver("registry", self.registry_rows(statuses))

    # -- runs ---------------------------------------------------------------------------------------------

    def run(self, as_of: dt.date, *, then: str = "nothing") -> None:
        """Run as of a date and check the feed and the engine's state against the model.

        Run again as of the same date with nothing new in between (`then="rerun"`, or a run
        today right after the latest one), and nothing may change; or approve what it held
        (`then="approve"`).
        """
        world = self.world
        quiet = as_of == self.last_run and world.seq == self.last_run_seq
        footprint = self.footprint() if quiet else None
        run_seq = world.step()
        before = {b: (x.state, x.reason) for b, x in world.ledgers.items()}
        size = self.services.settings.run_partition_persons
        event("run of everyone" if size is None else f"run by ranges of {size}")
        try:
            run = execute_run(self.services, as_of=as_of)
        except Exception as error:  # any error of a valid run is the engine's
            fail(mm.ENGINE_ERROR, f"the run as of {as_of} failed: {error!r}")
            return  # skipped (triage): the run published nothing, go on
        assert run.status == "published", (run.status, run.report.get("guard"))
        self.last_run, self.last_run_seq = as_of, run_seq
        world.runs[run.id] = as_of
        entries, statuses = self.read_engine()
        for entry in entries:
            event(f"entry {entry.action}/{entry.reason}/{entry.status}")
            if entry.approves is not None:
                world.apply_entry(entry, as_of=as_of, run_seq=run_seq, run_id=run.id)
                continue
            world.apply_entry(entry, as_of=world.runs.get(entry.run_id, as_of), run_seq=run_seq,
                              run_id=run.id)  # fmt: skip
        world.supersede_held(as_of=as_of, run_seq=run_seq)
        world.forget_withdrawn_duplicates(run_seq=run_seq)
        world.check_after_run(
            as_of=as_of, run_seq=run_seq, previous_run_seq=self.previous_run_seq,
            run_id=run.id, before=before, report=run.report or {},
        )  # fmt: skip
        self.check_statuses(statuses, f"after the run as of {as_of}")
        self.check_assessments()
        self.previous_run_seq = run_seq
        if footprint is not None:
            after = self.footprint()
            names = ("last list seq", "benefit statuses", "tasks", "notices", "certifications")
            changed = [n for n, b, a in zip(names, footprint, after, strict=True) if b != a]
            if changed:
                made = [f"{world.refs.get(e.person_id)}: {e.describe()}" for e in entries]
                fail(mm.I5_RERUN, f"rerunning {as_of} with nothing new changed {changed}; "
                                  f"entries {made}")  # fmt: skip
        if then == "rerun":
            self.run(as_of)
        elif then == "approve":
            for ledger in self.held(superseded=False):
                self.approve(ledger)

    def check_assessments(self) -> None:
        """Every published run's assessments read back as that run graded them.

        A run stores only the assessments that changed; what stood at each run (each person's
        latest row at or before it) must still be exactly its grades, for every run so far.
        """
        with session_scope(self.services.sessions) as session:
            # What the latest run kept for the next is what the database's rows say stood.
            latest = session.get(Run, max(self.world.runs))
            assert _kept_standing(session, run_id=latest.id) is not None
            kept = standing_assessments(session, run=latest)
            read = standing_assessments(session, run=latest, kept=False)
            pd.testing.assert_frame_equal(kept, read, check_dtype=False)
            for run_id in self.world.runs:
                standing = assessments_as_of(run_id)
                stored = {
                    int(p): (str(level), str(rule))
                    for p, level, rule in session.execute(
                        select(standing.person_id, standing.level, standing.rule)
                    )
                }
                if stored != self.graded[run_id]:
                    wrong = {
                        p: (stored.get(p), self.graded[run_id].get(p))
                        for p in set(stored) | set(self.graded[run_id])
                        if stored.get(p) != self.graded[run_id].get(p)
                    }
                    raise AssertionError(f"run {run_id}: stood (read, graded) {wrong}")

    def nightly_ingest(self, lags: tuple[int, ...]) -> None:
        """Deliver every trace source up to a day or two before today, as the nightly job does."""
        self.world.step()
        for source, lag in zip(mm.TRACE_SOURCES, lags, strict=True):
            self.deliver_traces_until(source, self.clock - dt.timedelta(days=lag))

    @precondition(lambda self: self.clock < HORIZON)
    @rule(n=st.integers(1, 60), nightly=st.booleans(), then=THEN,
          lags=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)))  # fmt: skip
    def advance_and_run(self, n: int, nightly: bool, lags: tuple[int, int, int], then: str) -> None:
        """Days pass; maybe the nightly ingest delivers every source a day or two behind; run."""
        self.clock = min(self.clock + dt.timedelta(days=n), HORIZON)
        if nightly:
            self.nightly_ingest(lags)
        self.run(self.clock, then=then)

    @precondition(lambda self: self.clock < HORIZON)
    @rule(n=st.integers(90, 200), lags=st.tuples(st.integers(0, 2), st.integers(0, 2),
                                                  st.integers(0, 2)), then=THEN)  # fmt: skip
    def run_after_months(self, n: int, lags: tuple[int, int, int], then: str) -> None:
        """A long quiet stretch (no review answered, nothing contested), then a run."""
        self.clock = min(self.clock + dt.timedelta(days=n), HORIZON)
        self.nightly_ingest(lags)
        self.run(self.clock, then=then)

    @precondition(lambda self: self.clock < HORIZON)
    @rule(lags=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)), then=THEN)
    def run_tomorrow(self, lags: tuple[int, int, int], then: str) -> None:
        """The next night: every source delivered but its last day or two; run."""
        self.clock = min(self.clock + dt.timedelta(days=1), HORIZON)
        self.nightly_ingest(lags)
        self.run(self.clock, then=then)

    @precondition(lambda self: self.clock < HORIZON)
    @rule(lags=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)), then=THEN)
    def run_at_month_end(self, lags: tuple[int, int, int], then: str) -> None:
        """The monthly run on the last day of the month (of tomorrow)."""
        following = self.clock + dt.timedelta(days=1)
        self.clock = min(mm.end_of_month(following), HORIZON)
        self.nightly_ingest(lags)
        self.run(self.clock, then=then)

    @rule(size=st.sampled_from([None, 2, 5]))
    def run_by_ranges(self, size: int | None) -> None:
        """Later runs go by ranges of `size` person ids, or everyone at once: the same money."""
        self.services.settings = self.services.settings.model_copy(
            update={"run_partition_persons": size}
        )

    @precondition(lambda self: self.last_run is None or self.clock >= self.last_run)
    @rule()
    def run_today(self) -> None:
        """Run as of today (again, if the latest run was today)."""
        self.run(self.clock)

    def footprint(self) -> tuple[Any, ...]:
        with session_scope(self.services.sessions) as session:
            return (
                session.scalar(select(ListEntry.seq).order_by(ListEntry.seq.desc()).limit(1)),
                sorted((b, str(s)) for b, s in session.execute(select(Benefit.id, Benefit.status))),
                sorted(
                    (t, str(s), o)
                    for t, s, o in session.execute(
                        select(ReviewTask.id, ReviewTask.status, ReviewTask.outcome)
                    )
                ),
                sorted(session.scalars(select(Notice.id))),
                sorted(session.scalars(select(Certification.id))),
            )

    @precondition(lambda self: "REFUSAL" not in mm.SKIPPED)
    @rule(kind=st.sampled_from(("before_latest", "after_today")), n=st.integers(1, 400))
    def run_refused(self, kind: str, n: int) -> None:
        """A run before the latest published one, or after today, is refused and publishes nothing."""
        if kind == "before_latest":
            if self.last_run is None:
                return
            as_of = self.last_run - dt.timedelta(days=n)
        else:
            as_of = dt.datetime.now(TIMEZONE).date() + dt.timedelta(days=n)
        self.world.step()
        before = self.published_runs()
        try:
            execute_run(self.services, as_of=as_of)
        except RunRefused:
            refused = True
        else:
            refused = False
        after = self.published_runs()
        if not refused or after != before:
            fail(mm.REFUSAL, f"a run as of {as_of} ({kind}; latest run {self.last_run}) was "
                             f"{'refused' if refused else 'not refused'}; published runs and "
                             f"last list seq {before} -> {after}")  # fmt: skip

    def published_runs(self) -> tuple[list[int], int | None]:
        """Return the published runs' ids and the last list sequence number."""
        with session_scope(self.services.sessions) as session:
            runs = session.scalars(select(Run.id).where(Run.status == "published")).all()
            seq = session.scalar(select(ListEntry.seq).order_by(ListEntry.seq.desc()).limit(1))
        return sorted(runs), seq

    # -- after every step ----------------------------------------------------------------------------

    @invariant()
    def feed_replays_to_benefit_status(self) -> None:
        """Replaying the feed gives the engine's Benefit.status, after every step."""
        if not self.world.ledgers:
            return
        with session_scope(self.services.sessions) as session:
            statuses = {b: str(s) for b, s in session.execute(select(Benefit.id, Benefit.status))}
        self.check_statuses(statuses, "after a step")


@pytest.mark.slow(seconds=270)  # each backend; the suite's longest (tests/conftest.py)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_money_path_under_random_histories(
    backend: str, database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    template = DatabaseTemplate(backend, database_url_factory, tmp_path)
    machine = type(f"MoneyPathOn{backend.title()}", (MoneyPath,), {"template": template})
    COVERAGE.clear()
    try:
        run_state_machine_as_test(machine, settings=MONEY_PATH_SETTINGS)
    finally:
        template.close()
        print(
            f"\nmoney path on {backend}:",
            ", ".join(f"{k}: {v}" for k, v in sorted(COVERAGE.items())),
        )
