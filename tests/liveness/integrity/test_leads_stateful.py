"""Integrity leads under random sequences: the roll changes, detection, orders, answers, reviews.

Hypothesis drives a roll of seven persons (one benefit each) through the integrity service's
entry points: accounts, phones and names that make `shared_bank_account`, `shared_phone` and
`same_demographics` fire or stop firing, persons moving region, `refresh_leads` on days going
forward (and refused ones: after today, before the latest detection), `create_orders` for a
rule or some regions, `answer_lead` with every verdict and amounts valid or not, in scope or
not, and `review_answer` accepting or returning, by whoever answered or someone else.

The test keeps its own model: the findings it expects from the roll (computed here, not by the
rules), each lead's status, order, evidence and answer, the orders, and the audit entries.
After every step the tables must match it, and hold whatever the model thinks: transitions
only along the lifecycle's edges (read from the database, step to step), one lead per (rule,
key), an order closed exactly when all its leads are, an order's leads in its region, a
withdrawn lead never ordered. A refused call changes no table, not even the audit log: the
service audits changes, the boundary (api/deps.py) audits refusals in a transaction of its own.

Examples per backend: `LIVENESS_LEADS_EXAMPLES` (default 40), steps `LIVENESS_LEADS_STEPS` (30).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from liveness.access.service import Forbidden
from liveness.db import make_engine
from liveness.errors import InputInvalid, NotFound
from liveness.evidence.store import EvidenceStore
from liveness.integrity import (
    IntegrityInvalid,
    LeadRefused,
    LeadsDateInvalid,
    answer_lead,
    create_orders,
    load_integrity_policy,
    refresh_leads,
    review_answer,
)
from liveness.migrate import upgrade
from models import (
    AnswerReview,
    AuditEntry,
    Base,
    Benefit,
    BenefitStatus,
    BenefitType,
    InspectionOrder,
    IntegrityLead,
    LeadAnswer,
    LeadStatus,
    LeadVerdict,
    OrderStatus,
    Person,
)
from tests.liveness.conftest import REPO

EXAMPLES = int(os.environ.get("LIVENESS_LEADS_EXAMPLES", "40"))
STEPS = int(os.environ.get("LIVENESS_LEADS_STEPS", "30"))
LEADS_SETTINGS = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)  # fmt: skip
POLICY = load_integrity_policy(REPO / "config" / "integrity.toml")
FIRST_DAY = dt.date(2025, 6, 1)
MOST_YUAN = Decimal("9999999999.99")

REGIONS = ("330702", "330782", "330102")
# What integrity_leads.key holds.
KEY_LENGTH = 128
# Scopes of codes and prefixes an inspector may hold; "33070" covers 330702 but not 330782.
SCOPES: tuple[tuple[str, ...] | None, ...] = (
    None, None, None, ("330702",), ("3307",), ("330782",), ("3301",), (), ("33070",),
    ("4401", "330102"),
)  # fmt: skip
# The simplest draws come first: everybody sharing makes leads from the first examples on.
ACCOUNTS = ("6222-0001", "6222-0002", None, "")
PHONES = ("13900000001", "13900000002", None)
NAMES = ("张伟", "王芳")
ANSWERERS = ("insp-a", "insp-b", "city")
REVIEWERS = ("city", "county", "insp-a")
ISSUERS = ("city", "county")
ORDER_RULES = (
    None, None, "shared_bank_account", "shared_phone", "same_demographics",
    "two_region_certification", "no_such_rule",
)  # fmt: skip
REASONS = (None, "", "   ", "no visit note attached", "y" * 500, "x" * 501)
VERDICTS: tuple[LeadVerdict | str, ...] = (*LeadVerdict, *(v.value for v in LeadVerdict))
# Amounts at the edges: not to the fen, too large, not numbers, written oddly, negative zero.
ODD_AMOUNTS = (
    "-0.01", "0.001", "12.345", "10000000000.00", "9999999999.99", "NaN", "sNaN", "Infinity",
    "-Infinity", "1E+2", "-0",
)  # fmt: skip
AMOUNTS = st.one_of(
    st.just(Decimal(0)),
    st.integers(1, 999_999_999_999).map(lambda cents: Decimal(cents) / 100),
    st.sampled_from([Decimal(text) for text in ODD_AMOUNTS]),
)
PICK = st.integers(0, 1_000)

# The lifecycle's edges, as the database shows them from one step to the next.
EDGES = {
    (LeadStatus.OPEN, LeadStatus.ORDERED),
    (LeadStatus.OPEN, LeadStatus.WITHDRAWN),
    (LeadStatus.ORDERED, LeadStatus.ANSWERED),
    (LeadStatus.ANSWERED, LeadStatus.CLOSED),
    (LeadStatus.ANSWERED, LeadStatus.ORDERED),
}
ORDER_EDGES = {
    (OrderStatus.OPEN, OrderStatus.ANSWERED),
    (OrderStatus.ANSWERED, OrderStatus.OPEN),
    (OrderStatus.ANSWERED, OrderStatus.CLOSED),
}
# What a refused call must leave alone.
TABLES = (
    "persons", "benefits", "roll_changes", "integrity_leads", "inspection_orders",
    "lead_answers", "audit_log",
)  # fmt: skip

# What the sequences exercised, printed at the end of the test (pytest -s shows it).
COVERAGE: Counter[str] = Counter()


@dataclass
class Citizen:
    """What the roll holds of one person, as the model knows it."""

    ref: str
    id_number: str
    region: str
    name: str
    monthly: Decimal
    account: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Finding:
    """A lead the rules should find on the roll as it is."""

    region: str
    refs: tuple[str, ...]
    at_risk: Decimal


@dataclass
class Answer:
    """The answer a lead should hold, and its review."""

    verdict: LeadVerdict
    amount: Decimal
    by: str
    review: AnswerReview | None = None
    reviewed_by: str | None = None
    reason: str | None = None


@dataclass
class Lead:
    """One stored lead, as the model expects it."""

    id: int
    rule: str
    key: str
    region: str
    found_on: dt.date
    refs: tuple[str, ...]
    at_risk: Decimal
    status: LeadStatus = LeadStatus.OPEN
    order_id: int | None = None
    answer: Answer | None = None


@dataclass
class Order:
    """One inspection order, as the model expects it."""

    id: int
    region: str
    leads: list[int] = field(default_factory=list)


def _main_region(regions: list[str]) -> str:
    """Return the region most of a group live in (ties: the smallest code)."""
    counts = Counter(regions)
    return min(counts, key=lambda region: (-counts[region], region))


def expected_findings(roll: list[Citizen]) -> dict[tuple[str, str], Finding]:
    """Compute, without the rules' code, what the three roll rules find on the roll."""
    found: dict[tuple[str, str], Finding] = {}
    for rule_name, value_of, least in (
        ("shared_bank_account", lambda c: c.account, POLICY.get("shared_bank_account", "min_persons")),
        ("shared_phone", lambda c: c.phone, POLICY.get("shared_phone", "min_persons")),
    ):  # fmt: skip
        groups: dict[str, list[Citizen]] = {}
        for citizen in roll:
            value = value_of(citizen)
            if value:
                groups.setdefault(value, []).append(citizen)
        for value, group in groups.items():
            if len(group) >= least:
                group.sort(key=lambda c: c.ref)
                found[(rule_name, value)] = Finding(
                    region=_main_region([c.region for c in group]),
                    refs=tuple(c.ref for c in group),
                    at_risk=sum((c.monthly for c in group), Decimal(0)),
                )
    # Everyone shares sex and birth date: a name shared (within a region) is one person twice.
    same_region = POLICY.get("same_demographics", "same_region")
    twins: dict[tuple[str, str], list[Citizen]] = {}
    for citizen in roll:
        twins.setdefault((citizen.name, citizen.region if same_region else ""), []).append(citizen)
    for group in twins.values():
        if len(group) >= 2:
            group.sort(key=lambda c: c.id_number)
            amounts = sorted(c.monthly for c in group)
            found[("same_demographics", "+".join(c.id_number for c in group))] = Finding(
                region=_main_region([c.region for c in group]),
                refs=tuple(c.ref for c in group),
                at_risk=sum(amounts[:-1], Decimal(0)),
            )
    return found


def amount_is_valid(amount: Decimal, verdict: LeadVerdict) -> bool:
    """Say whether an answer's amount is a sum of money to the fen that its verdict may carry."""
    if not amount.is_finite() or amount < 0 or amount > MOST_YUAN:
        return False
    cents = amount * 100
    if cents != cents.to_integral_value():
        return False
    return amount == 0 or verdict == LeadVerdict.CONFIRMED


def in_scope(region: str, scope: tuple[str, ...] | None) -> bool:
    """Say whether a region lies within a scope of codes or prefixes (None: everywhere)."""
    return scope is None or any(region.startswith(prefix) for prefix in scope)


def snapshot(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Read every row of the tables a refused call must leave alone."""
    tables = {name: Base.metadata.tables[name] for name in TABLES}
    return {
        name: [tuple(row) for row in session.execute(select(t).order_by(*t.primary_key.columns))]
        for name, t in tables.items()
    }


class LeadsLifecycle(RuleBasedStateMachine):
    """Random changes to a small roll, detections, orders, answers and reviews."""

    engine: ClassVar[Engine]
    store: ClassVar[EvidenceStore]

    def __init__(self) -> None:
        super().__init__()
        # One outer transaction per example, rolled back at its end; each step commits a
        # savepoint inside it, as a boundary would commit its transaction.
        self.connection: Connection = self.engine.connect()
        self.outer = self.connection.begin()
        self.roll: list[Citizen] = []
        self.today = FIRST_DAY
        self.leads: dict[tuple[str, str], Lead] = {}
        self.orders: dict[int, Order] = {}
        self.audit: list[tuple[str, str, str, dict[str, str]]] = []
        # Statuses as the database showed them after the previous step.
        self.seen: dict[int, LeadStatus] = {}
        self.seen_orders: dict[int, OrderStatus] = {}

    @initialize(
        homes=st.lists(st.sampled_from(REGIONS), min_size=7, max_size=7),
        accounts=st.lists(st.sampled_from(ACCOUNTS), min_size=7, max_size=7),
        phones=st.lists(st.sampled_from(PHONES), min_size=7, max_size=7),
        names=st.lists(st.sampled_from((*NAMES, None)), min_size=7, max_size=7),
        numbers=st.integers(1, 7),
    )
    def enrol(
        self,
        homes: list[str],
        accounts: list[str | None],
        phones: list[str | None],
        names: list[str | None],
        numbers: int,
    ) -> None:
        """Put seven persons on the roll, some sharing a region, an account, a phone, a name.

        The first is enrolled under `numbers` identity numbers: as many persons with their
        name, sex, birth date and region, the pattern `same_demographics` looks for.
        """
        homes[:numbers] = homes[:1] * numbers
        names[:numbers] = [NAMES[0]] * numbers
        self.roll = [
            Citizen(
                ref=f"P{n}",
                id_number=f"{region}19500101{n:03d}1",
                region=region,
                name=names[n - 1] or f"独{n}",
                monthly=Decimal(1000 + 137 * n) + Decimal(n * 7 % 100) / 100,
                account=accounts[n - 1],
                phone=phones[n - 1],
            )
            for n, region in enumerate(homes, 1)
        ]
        with self.step() as session:
            for citizen in self.roll:
                person = Person(
                    person_ref=citizen.ref, id_number=citizen.id_number, id_status="valid",
                    name=citizen.name, sex="M", birth_date=dt.date(1950, 1, 1),
                    region_code=citizen.region, grid_code="G1", bank_account=citizen.account,
                    phone=citizen.phone,
                )  # fmt: skip
                session.add(person)
                session.flush()
                session.add(
                    Benefit(
                        person_id=person.id, benefit_type=BenefitType.ENTERPRISE_PENSION,
                        monthly_amount=citizen.monthly, benefit_start=dt.date(2010, 1, 1),
                        status=BenefitStatus.ACTIVE,
                    )
                )  # fmt: skip
        # The first detection, so that every example has leads to order, answer and review.
        self.refresh(advance=0, shift=0)

    def teardown(self) -> None:
        """Roll the example back."""
        self.outer.rollback()
        self.connection.close()

    @contextmanager
    def step(self) -> Iterator[Session]:
        """Give a session for one step; commit it (a savepoint) or roll it back."""
        session = Session(bind=self.connection, join_transaction_mode="create_savepoint")
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def refused(self, error: type[Exception], call: Callable[[Session], object]) -> None:
        """Make a call the service must refuse with `error`; it must change no table."""
        with self.step() as session:
            before = snapshot(session)
            with pytest.raises(error):
                call(session)
            assert snapshot(session) == before, f"a refused call ({error.__name__}) changed rows"
            session.rollback()
        COVERAGE[f"refused: {error.__name__}"] += 1

    def by_id(self) -> dict[int, Lead]:
        """Return the model's leads by id."""
        return {lead.id: lead for lead in self.leads.values()}

    def pick(self, pick: int, statuses: tuple[LeadStatus, ...] | None = None) -> Lead | None:
        """Choose a lead of some statuses (any: also a lead that does not exist, as None)."""
        leads = sorted(self.leads.values(), key=lambda lead: lead.id)
        if statuses is not None:
            leads = [lead for lead in leads if lead.status in statuses]
            return leads[pick % len(leads)]
        return None if pick % (len(leads) + 1) == len(leads) else leads[pick % (len(leads) + 1)]

    def has(self, *statuses: LeadStatus) -> bool:
        """Say whether the model holds a lead in one of these statuses."""
        return any(lead.status in statuses for lead in self.leads.values())

    # -- the roll changes -------------------------------------------------------------------

    def change_person(self, index: int, **values: str | None) -> None:
        """Change some columns of one person on the roll, in the model and in the database."""
        citizen = self.roll[index]
        with self.step() as session:
            person = session.scalars(select(Person).where(Person.person_ref == citizen.ref)).one()
            for column, value in values.items():
                setattr(person, column, value)
        for column, value in values.items():
            attribute = {"bank_account": "account", "region_code": "region"}.get(column, column)
            setattr(citizen, attribute, value)
        COVERAGE[f"roll: {', '.join(values)}"] += 1

    @rule(
        index=st.integers(0, 6),
        change=st.one_of(
            st.tuples(st.just("bank_account"), st.sampled_from(ACCOUNTS)),
            st.tuples(st.just("phone"), st.sampled_from(PHONES)),
            st.tuples(st.just("name"), st.sampled_from((*NAMES, None))),
            st.tuples(st.just("region_code"), st.sampled_from(REGIONS)),
        ),
    )
    def change_roll(self, index: int, change: tuple[str, str | None]) -> None:
        """Change someone's account, phone, name (None: back to their own) or region."""
        column, value = change
        if column == "name" and value is None:
            value = f"独{index + 1}"
        self.change_person(index, **{column: value})

    # -- detection --------------------------------------------------------------------------

    def latest(self) -> dt.date | None:
        """Return the latest day a lead was found on."""
        return max((lead.found_on for lead in self.leads.values()), default=None)

    @rule(advance=st.integers(0, 4), shift=st.integers(-6, 1))
    def refresh(self, advance: int, shift: int) -> None:
        """Detect as of a day near today (after it, or before the latest detection: refused)."""
        self.today += dt.timedelta(days=advance)
        as_of, today = self.today + dt.timedelta(days=shift), self.today
        latest = self.latest()

        def call(session: Session) -> Any:
            return refresh_leads(session, store=self.store, policy=POLICY, as_of=as_of, today=today)

        if as_of > today or (latest is not None and as_of < latest):
            self.refused(LeadsDateInvalid, call)
            COVERAGE["refresh: refused, " + ("after today" if as_of > today else "going back")] += 1
            return
        findings = expected_findings(self.roll)
        new = [pair for pair in findings if pair not in self.leads]
        gone = [
            lead
            for pair, lead in self.leads.items()
            if lead.status == LeadStatus.OPEN and pair not in findings
        ]
        with self.step() as session:
            report = call(session)
            # New leads are told apart by rule and persons: a rule's groups never share anyone.
            known = self.by_id()
            stored = {
                (lead.rule, tuple(lead.person_refs)): (lead.id, lead.key)
                for lead in session.scalars(select(IntegrityLead))
                if lead.id not in known
            }
        assert (report.found, report.new, report.withdrawn) == (len(findings), len(new), len(gone))
        assert len(stored) == len(new)
        for vanished in gone:
            vanished.status = LeadStatus.WITHDRAWN
        for pair, finding in findings.items():
            lead = self.leads.get(pair)
            if lead is None:
                lead_id, key = stored[(pair[0], finding.refs)]
                # The finding's own key where it fits the column; a stable one of its own if not.
                assert key == pair[1] if len(pair[1]) <= KEY_LENGTH else len(key) <= KEY_LENGTH
                self.leads[pair] = Lead(
                    id=lead_id, rule=pair[0], key=key, region=finding.region, found_on=as_of,
                    refs=finding.refs, at_risk=finding.at_risk,
                )  # fmt: skip
            elif lead.status == LeadStatus.OPEN:
                # Evidence follows the data only while nobody has been sent to inspect it.
                lead.refs, lead.at_risk = finding.refs, finding.at_risk
        COVERAGE["refresh"] += 1
        COVERAGE["refresh: found again, stays closed or withdrawn"] += sum(
            self.leads[pair].status in (LeadStatus.CLOSED, LeadStatus.WITHDRAWN)
            for pair in findings
        )
        COVERAGE["refresh: a key longer than its column"] += sum(
            len(key) > KEY_LENGTH for _, key in new
        )
        COVERAGE["refresh: lead withdrawn"] += len(gone)
        COVERAGE["refresh: lead found"] += len(new)

    # -- orders -----------------------------------------------------------------------------

    @rule(
        rule_name=st.sampled_from(ORDER_RULES),
        scope=st.sampled_from(SCOPES),
        by=st.sampled_from(ISSUERS),
    )
    def order(self, rule_name: str | None, scope: tuple[str, ...] | None, by: str) -> None:
        """Package the open leads (of a rule, in some regions) into one order per region."""
        due_on = self.today + dt.timedelta(days=30)
        regions = None if scope is None else list(scope)

        def call(session: Session) -> list[InspectionOrder]:
            return create_orders(
                session, due_on=due_on, issued_by=by, rule=rule_name, regions=regions
            )

        if rule_name == "no_such_rule":
            self.refused(IntegrityInvalid, call)
            return
        packaged = sorted(
            (
                lead
                for lead in self.leads.values()
                if lead.status == LeadStatus.OPEN
                and rule_name in (None, lead.rule)
                and in_scope(lead.region, scope)
            ),
            key=lambda lead: (lead.region, lead.id),
        )
        with self.step() as session:
            created = [(o.id, o.region_code, o.status, o.due_on) for o in call(session)]
        regions_expected = sorted({lead.region for lead in packaged})
        assert [region for _, region, _, _ in created] == regions_expected
        by_region = {region: order_id for order_id, region, _, _ in created}
        for order_id, region, status, due in created:
            assert order_id not in self.orders and status == OrderStatus.OPEN and due == due_on
            self.orders[order_id] = Order(id=order_id, region=region)
            self.audit.append(
                (by, "integrity.order.create", str(order_id),
                 {"region_code": region, "due_on": due_on.isoformat()})
            )  # fmt: skip
        for lead in packaged:
            lead.status, lead.order_id = LeadStatus.ORDERED, by_region[lead.region]
            self.orders[by_region[lead.region]].leads.append(lead.id)
        COVERAGE["orders: created"] += len(created)
        COVERAGE["orders: none to create"] += not created

    # -- answers ----------------------------------------------------------------------------

    def answer(
        self,
        lead: Lead | None,
        verdict: LeadVerdict | str,
        amount: Decimal,
        by: str,
        scope: tuple[str, ...] | None,
    ) -> None:
        """Answer a lead (None: one that does not exist); the model says what must happen."""
        lead_id = (max(self.by_id(), default=0) + 1000) if lead is None else lead.id

        def call(session: Session) -> Any:
            return answer_lead(
                session, lead_id=lead_id, verdict=verdict, amount_to_recover=amount,
                answered_by=by, note="seen at home", regions=None if scope is None else list(scope),
            )  # fmt: skip

        chosen = LeadVerdict(verdict)
        if lead is None:
            return self.refused(NotFound, call)
        if not in_scope(lead.region, scope):
            return self.refused(Forbidden, call)
        if lead.status not in (LeadStatus.ORDERED, LeadStatus.ANSWERED):
            COVERAGE[f"answer refused: lead {lead.status}"] += 1
            return self.refused(LeadRefused, call)
        if not amount_is_valid(amount, chosen):
            return self.refused(InputInvalid, call)
        with self.step() as session:
            call(session)
        COVERAGE[f"answer: {chosen} to a lead {lead.status}"] += 1
        lead.status = LeadStatus.ANSWERED
        lead.answer = Answer(verdict=chosen, amount=amount, by=by)
        self.audit.append(
            (by, "integrity.lead.answer", str(lead.id),
             {"verdict": chosen.value, "amount_to_recover": str(amount)})
        )  # fmt: skip

    @precondition(lambda self: self.has(LeadStatus.ORDERED, LeadStatus.ANSWERED))
    @rule(
        pick=PICK, verdict=st.sampled_from(VERDICTS), amount=AMOUNTS,
        by=st.sampled_from(ANSWERERS), scope=st.sampled_from(SCOPES),
    )  # fmt: skip
    def answer_ordered(
        self,
        pick: int,
        verdict: LeadVerdict | str,
        amount: Decimal,
        by: str,
        scope: tuple[str, ...] | None,
    ) -> None:
        """Answer a lead of an order (maybe again, maybe out of scope, maybe a bad amount)."""
        lead = self.pick(pick, (LeadStatus.ORDERED, LeadStatus.ANSWERED))
        self.answer(lead, verdict, amount, by, scope)

    @precondition(lambda self: bool(self.leads))
    @rule(pick=PICK, verdict=st.sampled_from(VERDICTS), by=st.sampled_from(ANSWERERS))
    def answer_any(self, pick: int, verdict: LeadVerdict | str, by: str) -> None:
        """Answer any lead, or one that does not exist: open, withdrawn and closed are refused."""
        self.answer(self.pick(pick), verdict, Decimal(0), by, None)

    # -- reviews ----------------------------------------------------------------------------

    def review(self, lead: Lead | None, accept: bool, by: str, reason: str | None) -> None:
        """Review a lead's answer (None: a lead that does not exist)."""
        lead_id = (max(self.by_id(), default=0) + 1000) if lead is None else lead.id

        def call(session: Session) -> Any:
            return review_answer(
                session, lead_id=lead_id, accept=accept, reviewed_by=by, reason=reason
            )

        why = (reason or "").strip() or None
        if lead is None:
            return self.refused(NotFound, call)
        answer = lead.answer
        if lead.status != LeadStatus.ANSWERED or answer is None:
            COVERAGE[f"review refused: lead {lead.status}"] += 1
            return self.refused(LeadRefused, call)
        if answer.by == by:
            COVERAGE["review refused: by whoever answered"] += 1
            return self.refused(LeadRefused, call)
        if (not accept and why is None) or (why is not None and len(why) > 500):
            COVERAGE["review refused: reason"] += 1
            return self.refused(LeadRefused, call)
        with self.step() as session:
            call(session)
        answer.review = AnswerReview.ACCEPTED if accept else AnswerReview.RETURNED
        answer.reviewed_by, answer.reason = by, None if accept else why
        lead.status = LeadStatus.CLOSED if accept else LeadStatus.ORDERED
        detail = {"review": answer.review.value}
        if not accept and why is not None:
            detail["reason"] = why
        self.audit.append((by, "integrity.lead.review", str(lead.id), detail))
        COVERAGE[f"review: {answer.review}"] += 1

    @precondition(lambda self: self.has(LeadStatus.ANSWERED))
    @rule(
        pick=PICK, accept=st.booleans(), by=st.sampled_from(REVIEWERS),
        reason=st.sampled_from(REASONS),
    )  # fmt: skip
    def review_answered(self, pick: int, accept: bool, by: str, reason: str | None) -> None:
        """Accept or return an answered lead's answer, by someone or by whoever answered."""
        self.review(self.pick(pick, (LeadStatus.ANSWERED,)), accept, by, reason)

    @precondition(lambda self: bool(self.leads))
    @rule(pick=PICK, accept=st.booleans(), by=st.sampled_from(REVIEWERS))
    def review_any(self, pick: int, accept: bool, by: str) -> None:
        """Review any lead, or one that does not exist: only an answered lead is reviewed."""
        self.review(self.pick(pick), accept, by, "returned for a visit")

    # -- after every step -------------------------------------------------------------------

    @invariant()
    def tables_match_the_model(self) -> None:
        """The leads, orders, answers and audit entries are what the model expects."""
        with self.step() as session:
            leads = {lead.id: lead for lead in session.scalars(select(IntegrityLead))}
            orders = {order.id: order for order in session.scalars(select(InspectionOrder))}
            answers = {a.lead_id: a for a in session.scalars(select(LeadAnswer))}
            audit = [
                (e.actor, e.action, e.target_ref, e.detail)
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            ]
            latest = session.scalar(select(func.max(IntegrityLead.found_on)))
            self.check_leads(leads, answers)
            self.check_orders(orders, leads)
        assert latest == self.latest()
        # Refusals are audited by the boundary, in a transaction of its own: not here.
        assert audit == self.audit, "the audit log is not the changes made"

    def check_leads(self, leads: dict[int, IntegrityLead], answers: dict[int, LeadAnswer]) -> None:
        """Compare each stored lead and answer with the model; check the lifecycle's edges."""
        expected = self.by_id()
        assert set(leads) == set(expected), "leads stored are not the leads found"
        assert len({(lead.rule, lead.key) for lead in leads.values()}) == len(leads)
        # SQLite keeps a longer key than the column holds; PostgreSQL refuses it.
        assert all(len(lead.key) <= KEY_LENGTH for lead in leads.values())
        for lead_id, lead in leads.items():
            model = expected[lead_id]
            assert (lead.rule, lead.key, lead.region_code, lead.found_on) == (
                model.rule, model.key, model.region, model.found_on,
            )  # fmt: skip
            assert lead.status == model.status, (lead_id, lead.status, model.status)
            assert lead.order_id == model.order_id
            # Open and withdrawn leads were never in an order; the others stay in theirs.
            assert (lead.order_id is None) == (
                lead.status in (LeadStatus.OPEN, LeadStatus.WITHDRAWN)
            )
            assert tuple(lead.person_refs) == model.refs, (lead_id, lead.person_refs, model.refs)
            assert lead.amount_at_risk == model.at_risk
            before = self.seen.get(lead_id)
            if before is None:
                assert lead.status == LeadStatus.OPEN, "a lead is found open"
            elif before != lead.status:
                assert (before, lead.status) in EDGES, (lead_id, before, lead.status)
            self.seen[lead_id] = lead.status
            self.check_answer(lead, answers.get(lead_id), model.answer)

    @staticmethod
    def check_answer(lead: IntegrityLead, stored: LeadAnswer | None, model: Answer | None) -> None:
        """Compare a lead's stored answer with the model's; its review must fit its status."""
        if model is None:
            assert stored is None
            assert lead.status in (LeadStatus.OPEN, LeadStatus.WITHDRAWN, LeadStatus.ORDERED)
            return
        assert stored is not None and stored.order_id == lead.order_id
        assert (stored.verdict, stored.amount_to_recover, stored.answered_by) == (
            model.verdict, model.amount, model.by,
        )  # fmt: skip
        assert (stored.review, stored.reviewed_by, stored.return_reason) == (
            model.review, model.reviewed_by, model.reason,
        )  # fmt: skip
        if stored.amount_to_recover > 0:
            assert stored.verdict == LeadVerdict.CONFIRMED
        review = {
            LeadStatus.ANSWERED: None,
            LeadStatus.ORDERED: AnswerReview.RETURNED,
            LeadStatus.CLOSED: AnswerReview.ACCEPTED,
        }[lead.status]
        assert stored.review == review, (lead.id, lead.status, stored.review)
        if stored.review is not None:
            # Four eyes: nobody reviews their own answer.
            assert stored.reviewed_by != stored.answered_by
        if stored.review == AnswerReview.RETURNED:
            assert stored.return_reason and stored.return_reason.strip()

    def check_orders(
        self, orders: dict[int, InspectionOrder], leads: dict[int, IntegrityLead]
    ) -> None:
        """Each order's status follows its leads' statuses; a closed order stays closed."""
        assert set(orders) == set(self.orders)
        members: dict[int, list[IntegrityLead]] = {order_id: [] for order_id in orders}
        for lead in leads.values():
            if lead.order_id is not None:
                members[lead.order_id].append(lead)
        for order_id, order in orders.items():
            model = self.orders[order_id]
            assert order.region_code == model.region
            assert sorted(lead.id for lead in members[order_id]) == sorted(model.leads)
            assert members[order_id], "an order without leads"
            assert {lead.region_code for lead in members[order_id]} == {order.region_code}
            statuses = {lead.status for lead in members[order_id]}
            if statuses == {LeadStatus.CLOSED}:
                expected = OrderStatus.CLOSED
            elif statuses <= {LeadStatus.CLOSED, LeadStatus.ANSWERED}:
                expected = OrderStatus.ANSWERED
            else:
                expected = OrderStatus.OPEN
            assert order.status == expected, (order_id, order.status, statuses)
            assert (order.closed_at is not None) == (order.status == OrderStatus.CLOSED)
            before = self.seen_orders.get(order_id)
            if before is None:
                assert order.status == OrderStatus.OPEN, "an order is issued open"
            elif before != order.status:
                assert (before, order.status) in ORDER_EDGES, (order_id, before, order.status)
            self.seen_orders[order_id] = order.status


@pytest.mark.slow(seconds=15)  # each backend (tests/conftest.py)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_leads_lifecycle_under_random_sequences(
    backend: str, database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    engine = make_engine(database_url_factory(backend))
    upgrade(engine)
    machine = type(
        f"LeadsLifecycleOn{backend.title()}",
        (LeadsLifecycle,),
        {"engine": engine, "store": EvidenceStore(tmp_path / "evidence")},
    )
    COVERAGE.clear()
    try:
        run_state_machine_as_test(machine, settings=LEADS_SETTINGS)
    finally:
        engine.dispose()
        print(
            f"\nleads lifecycle on {backend}:",
            ", ".join(f"{k}: {v}" for k, v in sorted(COVERAGE.items())),
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_one_person_under_seven_numbers_is_one_lead_across_refreshes(
    backend: str, database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    """The sequence the machine found: seven numbers' key overflowed its column.

    On PostgreSQL the refresh failed (no lead stored for anyone); on SQLite the key was kept
    whole. Now the key is stored as a digest, the same one on the next detection.
    """
    engine = make_engine(database_url_factory(backend))
    upgrade(engine)
    machine = type(
        f"SevenNumbersOn{backend.title()}",
        (LeadsLifecycle,),
        {"engine": engine, "store": EvidenceStore(tmp_path / "evidence")},
    )()
    try:
        machine.enrol(
            homes=[REGIONS[0]] * 7, accounts=[None] * 7, phones=[None] * 7, names=[None] * 7,
            numbers=7,
        )  # fmt: skip
        machine.tables_match_the_model()
        machine.refresh(advance=1, shift=0)
        machine.tables_match_the_model()
        with machine.step() as session:
            keys = session.scalars(
                select(IntegrityLead.key).where(IntegrityLead.rule == "same_demographics")
            ).all()
        assert len(keys) == 1 and keys[0].startswith("sha256:"), keys
    finally:
        machine.teardown()
        engine.dispose()
