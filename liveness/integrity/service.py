"""Integrity leads and inspection orders: detect, store, package per region, answer, review."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import ColumnElement, Float, false, func, or_, select, type_coerce
from sqlalchemy.orm import QueryableAttribute, Session

from liveness.access.audit import record_audit
from liveness.access.service import Forbidden
from liveness.errors import LivenessError, NotFound
from liveness.evidence.snapshot import ACTING_MATCHES
from liveness.evidence.store import EvidenceStore
from liveness.integrity import rules
from liveness.integrity.policy import RULES, IntegrityPolicy
from models import (
    AnswerReview,
    AuditEntry,
    Benefit,
    BenefitStatus,
    DeathRecord,
    Deregistration,
    InspectionOrder,
    IntegrityLead,
    LeadAnswer,
    LeadStatus,
    LeadVerdict,
    OrderStatus,
    Person,
    RecordStatus,
    ReviewTask,
    TaskStatus,
    utcnow,
)

CURRENT = (LeadStatus.OPEN, LeadStatus.ORDERED, LeadStatus.ANSWERED)
# The column's size (lead_answers.return_reason): a reason, not a report.
RETURN_REASON_MAX = 500
ANSWER_ACTION = "integrity.lead.answer"
REVIEW_ACTION = "integrity.lead.review"


class LeadRefused(LivenessError):
    """A change to a lead or an order that its state does not allow."""

    exit_code = 8
    http_status = 409


def roll_persons(session: Session) -> pd.DataFrame:
    """Return the roll with contacts, demographics and the monthly amount of active benefits."""
    amounts = (
        select(
            Benefit.person_id,
            func.sum(type_coerce(Benefit.monthly_amount, Float)).label("amount"),
        )
        .where(Benefit.status == BenefitStatus.ACTIVE)
        .group_by(Benefit.person_id)
        .subquery()
    )
    statement = select(
        Person.id, Person.person_ref, Person.id_number, Person.name, Person.sex,
        Person.birth_date, Person.region_code, Person.bank_account, Person.phone, amounts.c.amount,
    ).outerjoin(amounts, amounts.c.person_id == Person.id)  # fmt: skip
    rows = session.execute(statement).all()
    frame = pd.DataFrame(rows, columns=rules.ROLL_COLUMNS[:-1])
    frame["active"] = frame["monthly_amount"].notna()
    frame["monthly_amount"] = frame["monthly_amount"].fillna(0.0).astype(float)
    return frame


def acting_deaths(
    session: Session, *, statuses: tuple[RecordStatus, ...] = (RecordStatus.ACTIVE,)
) -> pd.DataFrame:
    """Return, per person with matched death evidence, the earliest death day and its sources.

    By default only records that act; a record that later proof of life refuted still
    conflicts with that proof, which is what the face-pass rule looks for.
    """
    rows = session.execute(
        select(DeathRecord.person_id, DeathRecord.died_on, DeathRecord.source).where(
            DeathRecord.person_id.is_not(None),
            DeathRecord.status.in_(statuses),
            DeathRecord.match.in_([m.value for m in ACTING_MATCHES]),
        )
    ).all()
    frame = pd.DataFrame(rows, columns=["person_id", "died_on", "source"])
    if frame.empty:
        return pd.DataFrame({"person_id": [], "death_day": [], "sources": []})
    frame["death_day"] = (pd.to_datetime(frame["died_on"]) - pd.Timestamp("1970-01-01")).dt.days
    return (
        frame.groupby("person_id")
        .agg(death_day=("death_day", "min"), sources=("source", lambda s: ",".join(sorted(set(s)))))
        .reset_index()
    )


def deregistrations(session: Session) -> pd.DataFrame:
    """Return every deregistration for a reason other than death."""
    columns = ["record_id", "id_number", "new_id_number", "reason", "deregistered_on", "person_id"]
    rows = session.execute(select(*(getattr(Deregistration, c) for c in columns))).all()
    return pd.DataFrame(rows, columns=columns)


def traces_of(
    session: Session, *, store: EvidenceStore, sources: Sequence[str], persons: np.ndarray,
    first_day: dt.date, last_day: dt.date,
) -> pd.DataFrame:  # fmt: skip
    """Read the traces of `persons` from `sources` within the window, as one frame."""
    frames = []
    wanted = pa.array(persons.astype(np.int32), type=pa.int32())
    columns = ["record_id", "person_id", "day", "kind", "link_key"]
    for source in sources:
        # Filter batch by batch: only the few dead persons' traces are ever held whole.
        for batch in store.scan(
            session, source=source, columns=columns, first_day=first_day, last_day=last_day
        ):
            kept = batch.filter(pc.is_in(batch["person_id"], value_set=wanted))
            if kept.num_rows:
                frame = kept.to_pandas()
                frame["kind"] = frame["kind"].astype(str)
                frame.insert(0, "source", source)
                frames.append(frame)
    if not frames:
        return pd.DataFrame({column: [] for column in rules.TRACE_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def face_passes(
    session: Session, *, store: EvidenceStore, pass_kinds: Sequence[str], first_day: dt.date,
    last_day: dt.date,
) -> pd.DataFrame:  # fmt: skip
    """Read the passing face results within the window that name a face template and a person."""
    frames = []
    kinds = pa.array(list(pass_kinds), type=pa.string())
    for batch in store.scan(
        session, source="face", columns=rules.FACE_PASS_COLUMNS, first_day=first_day,
        last_day=last_day,
    ):  # fmt: skip
        # Filtered in Arrow: only passes naming a template become pandas rows.
        wanted = pc.and_(
            pc.and_(pc.is_valid(batch["face_id"]), pc.greater_equal(batch["person_id"], 0)),
            pc.is_in(batch["kind"].cast(pa.string()), value_set=kinds),
        )
        kept = batch.filter(wanted)
        if kept.num_rows:
            frame = kept.to_pandas()
            frame["kind"] = frame["kind"].astype(str)
            frames.append(frame)
    if not frames:
        return pd.DataFrame({column: [] for column in rules.FACE_PASS_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def placing_outcomes(
    session: Session, *, outcomes: Sequence[str], first_day: dt.date, last_day: dt.date
) -> pd.DataFrame:
    """Return the review outcomes recorded within the window that say where a person is."""
    rows = session.execute(
        select(
            ReviewTask.id, ReviewTask.person_id, ReviewTask.kind, ReviewTask.outcome,
            ReviewTask.closed_on, ReviewTask.outcome_detail,
        ).where(
            ReviewTask.status == TaskStatus.DONE,
            ReviewTask.outcome.in_(list(outcomes)),
            ReviewTask.closed_on.between(first_day, last_day),
        )
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows, columns=["task_id", "person_id", "kind", "outcome", "closed_on", "detail"]
    )
    if frame.empty:
        return pd.DataFrame({column: [] for column in rules.OUTCOME_COLUMNS})
    frame["kind"] = frame["kind"].astype(object).map(str)
    frame["day"] = (pd.to_datetime(frame["closed_on"]) - pd.Timestamp("1970-01-01")).dt.days
    frame["actor"] = frame["detail"].str.get("by")
    frame["region"] = frame["detail"].str.get("region")
    return frame[rules.OUTCOME_COLUMNS]


def find_leads(
    session: Session,
    *,
    store: EvidenceStore,
    policy: IntegrityPolicy,
    as_of: dt.date,
    only: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Run the enabled rules (or `only` these) as of a day and return their leads."""
    chosen = [r for r in RULES if policy.enabled(r) and (only is None or r in only)]
    roll = roll_persons(session)
    found = [rules.empty_leads()]
    for rule, column in (("shared_bank_account", "bank_account"), ("shared_phone", "phone")):
        if rule in chosen:
            found.append(
                rules.shared_contact(
                    roll, column=column, rule=rule, min_persons=policy.get(rule, "min_persons")
                )
            )
    if "deregistered_number" in chosen:
        found.append(rules.deregistered_number(deregistrations(session), roll, policy=policy))
    if "same_demographics" in chosen:
        found.append(rules.same_demographics(roll, policy=policy))
    deaths = acting_deaths(session)
    if not deaths.empty:
        first_day = pd.Timestamp("1970-01-01") + pd.Timedelta(days=int(deaths["death_day"].min()))
        persons = deaths["person_id"].to_numpy()
        if "activity_after_death" in chosen:
            rule = "activity_after_death"
            traces = traces_of(
                session, store=store, sources=policy.get(rule, "sources"), persons=persons,
                first_day=first_day.date(), last_day=as_of,
            )  # fmt: skip
            traces = rules.counting_traces(traces, ignored_kinds=policy.get(rule, "ignored_kinds"))
            found.append(
                rules.after_death(
                    traces, deaths, roll, rule=rule, grace_days=policy.get(rule, "grace_days"),
                    min_traces=policy.get(rule, "min_traces"),
                    max_listed=policy.get(rule, "max_listed"), as_of=as_of,
                )
            )  # fmt: skip
    # A face pass after a death record conflicts with it even once the pass refuted it:
    # the inspector checks which of the two was wrong.
    disputed = acting_deaths(session, statuses=(RecordStatus.ACTIVE, RecordStatus.REFUTED))
    if not disputed.empty and "face_pass_after_death" in chosen:
        rule = "face_pass_after_death"
        first_day = pd.Timestamp("1970-01-01") + pd.Timedelta(days=int(disputed["death_day"].min()))
        traces = traces_of(
            session, store=store, sources=["face"], persons=disputed["person_id"].to_numpy(),
            first_day=first_day.date(), last_day=as_of,
        )  # fmt: skip
        traces = traces.loc[traces["kind"].isin(policy.get(rule, "pass_kinds")).to_numpy()]
        found.append(
            rules.after_death(
                traces, disputed, roll, rule=rule, grace_days=policy.get(rule, "grace_days"),
                min_traces=1, max_listed=20, as_of=as_of,
            )
        )  # fmt: skip
    if "same_face_id" in chosen:
        rule = "same_face_id"
        passes = face_passes(
            session, store=store, pass_kinds=policy.get(rule, "pass_kinds"),
            first_day=as_of - dt.timedelta(days=policy.get(rule, "window_days")), last_day=as_of,
        )  # fmt: skip
        found.append(
            rules.same_face_id(
                passes, roll, min_persons=policy.get(rule, "min_persons"),
                max_listed=policy.get(rule, "max_listed"),
            )
        )  # fmt: skip
    if "two_region_certification" in chosen:
        rule = "two_region_certification"
        outcomes = placing_outcomes(
            session, outcomes=policy.get(rule, "outcomes"),
            first_day=as_of - dt.timedelta(days=policy.get(rule, "window_days")), last_day=as_of,
        )  # fmt: skip
        found.append(
            rules.two_region_certification(
                outcomes, roll, max_listed=policy.get(rule, "max_listed")
            )
        )
    return pd.concat([f for f in found if not f.empty] or found, ignore_index=True)


@dataclass(frozen=True)
class RefreshReport:
    """What a refresh of the stored leads changed."""

    found: int
    new: int
    withdrawn: int


def refresh_leads(
    session: Session,
    *,
    store: EvidenceStore,
    policy: IntegrityPolicy,
    as_of: dt.date,
) -> RefreshReport:
    """Detect and store leads: new ones open, known ones updated, vanished open ones withdrawn."""
    found = find_leads(session, store=store, policy=policy, as_of=as_of)
    stored = {
        (lead.rule, lead.key): lead
        for lead in session.scalars(select(IntegrityLead).where(IntegrityLead.status.in_(CURRENT)))
    }
    known = {
        (rule, key)
        for rule, key in session.execute(select(IntegrityLead.rule, IntegrityLead.key)).all()
    }
    new = 0
    seen: set[tuple[str, str]] = set()
    for row in found.itertuples(index=False):
        pair = (str(row.rule), str(row.key))
        seen.add(pair)
        amount = None if row.amount_at_risk is None else Decimal(str(row.amount_at_risk))
        lead = stored.get(pair)
        if lead is not None:
            # Inspectors answer what they were sent: evidence changes only while still open.
            if lead.status == LeadStatus.OPEN:
                lead.evidence, lead.person_refs = row.evidence, list(row.person_refs)
                lead.amount_at_risk, lead.policy_version = amount, policy.version
            continue
        if pair in known:
            # Closed or withdrawn before: a closed finding is not reopened by the same data.
            continue
        session.add(
            IntegrityLead(
                rule=pair[0], key=pair[1], region_code=str(row.region_code),
                person_refs=list(row.person_refs), evidence=row.evidence, amount_at_risk=amount,
                status=LeadStatus.OPEN, policy_version=policy.version, found_on=as_of,
            )
        )  # fmt: skip
        new += 1
    withdrawn = 0
    for pair, lead in stored.items():
        if pair not in seen and lead.status == LeadStatus.OPEN:
            lead.status = LeadStatus.WITHDRAWN
            withdrawn += 1
    session.flush()
    return RefreshReport(found=len(found), new=new, withdrawn=withdrawn)


class IntegrityInvalid(LivenessError):
    """A query or an order asked for with a value the engine does not know."""

    exit_code = 11
    http_status = 422


def _in_scope(region: str, regions: Sequence[str] | None) -> bool:
    """Return whether a region is inside a caller's scope of codes or prefixes (None: all)."""
    return regions is None or any(region.startswith(prefix) for prefix in regions)


def _region_clause(column: QueryableAttribute[str], regions: Sequence[str]) -> ColumnElement[bool]:
    """Return the SQL condition that a region column lies within codes or prefixes."""
    if not regions:
        return false()
    return or_(*(column.startswith(prefix, autoescape=True) for prefix in regions))


def _check_rule(rule: str | None) -> None:
    """Refuse a rule name that is not one of the integrity rules."""
    if rule is not None and rule not in RULES:
        raise IntegrityInvalid(f"rule: {rule!r} is not a rule; expected one of {', '.join(RULES)}")


def narrow_scope(region: str | None, regions: Sequence[str] | None) -> Sequence[str] | None:
    """Return the scope of a query for `region` (a code or prefix) by a caller scoped to `regions`.

    A region inside the caller's scope narrows it; one wider than it keeps the caller's
    prefixes under it; one disjoint from it is refused rather than answered empty.
    """
    if region is None:
        return regions
    if _in_scope(region, regions):
        return [region]
    assert regions is not None
    inside = [prefix for prefix in regions if prefix.startswith(region)]
    if not inside:
        raise Forbidden(f"region {region} is not one of this caller's regions")
    return inside


def current_leads(
    session: Session, *, rule: str | None = None, regions: Sequence[str] | None = None
) -> list[IntegrityLead]:
    """Return the leads not yet closed or withdrawn, by rule then id."""
    _check_rule(rule)
    query = select(IntegrityLead).where(IntegrityLead.status.in_(CURRENT))
    if rule is not None:
        query = query.where(IntegrityLead.rule == rule)
    if regions is not None:
        query = query.where(_region_clause(IntegrityLead.region_code, regions))
    return list(session.scalars(query.order_by(IntegrityLead.rule, IntegrityLead.id)))


def lead_page(
    session: Session,
    *,
    rule: str | None = None,
    status: LeadStatus | None = None,
    regions: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[IntegrityLead], int]:
    """Return a page of leads in scope (by default the current ones) by id, and the total."""
    _check_rule(rule)
    query = select(IntegrityLead)
    if status is None:
        query = query.where(IntegrityLead.status.in_(CURRENT))
    else:
        query = query.where(IntegrityLead.status == status)
    if rule is not None:
        query = query.where(IntegrityLead.rule == rule)
    if regions is not None:
        query = query.where(_region_clause(IntegrityLead.region_code, regions))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(IntegrityLead.id).limit(limit).offset(offset))
    return list(rows), int(total)


def lead_answers(session: Session, lead_ids: Sequence[int]) -> dict[int, LeadAnswer]:
    """Return the answers given to some leads, by lead id."""
    if not lead_ids:
        return {}
    answers = session.scalars(select(LeadAnswer).where(LeadAnswer.lead_id.in_(list(lead_ids))))
    return {answer.lead_id: answer for answer in answers}


def create_orders(
    session: Session,
    *,
    due_on: dt.date,
    issued_by: str,
    rule: str | None = None,
    regions: Sequence[str] | None = None,
) -> list[InspectionOrder]:
    """Package every open lead without an order into one new order per region."""
    leads = [
        lead
        for lead in current_leads(session, rule=rule, regions=regions)
        if lead.status == LeadStatus.OPEN
    ]
    orders: dict[str, InspectionOrder] = {}
    for lead in sorted(leads, key=lambda lead: (lead.region_code, lead.id)):
        order = orders.get(lead.region_code)
        if order is None:
            order = InspectionOrder(
                region_code=lead.region_code, status=OrderStatus.OPEN, due_on=due_on,
                issued_by=issued_by,
            )  # fmt: skip
            session.add(order)
            session.flush()
            orders[lead.region_code] = order
        lead.order_id, lead.status = order.id, LeadStatus.ORDERED
    for order in orders.values():
        record_audit(
            session, actor=issued_by, action="integrity.order.create",
            target_type="inspection_order", target_ref=str(order.id),
            detail={"region_code": order.region_code, "due_on": due_on.isoformat()},
        )  # fmt: skip
    session.flush()
    return list(orders.values())


def list_orders(
    session: Session,
    *,
    regions: Sequence[str] | None = None,
    status: OrderStatus | None = None,
) -> list[InspectionOrder]:
    """Return inspection orders in scope, oldest first."""
    query = select(InspectionOrder)
    if regions is not None:
        query = query.where(_region_clause(InspectionOrder.region_code, regions))
    if status is not None:
        query = query.where(InspectionOrder.status == status)
    return list(session.scalars(query.order_by(InspectionOrder.id)))


def order_page(
    session: Session,
    *,
    regions: Sequence[str] | None = None,
    status: OrderStatus | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[tuple[InspectionOrder, dict[str, int]]], int]:
    """Return a page of orders in scope, oldest first, with their leads counted by status."""
    query = select(InspectionOrder)
    if regions is not None:
        query = query.where(_region_clause(InspectionOrder.region_code, regions))
    if status is not None:
        query = query.where(InspectionOrder.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    orders = list(session.scalars(query.order_by(InspectionOrder.id).limit(limit).offset(offset)))
    counts = order_lead_counts(session, [order.id for order in orders])
    return [(order, counts[order.id]) for order in orders], int(total)


def order_lead_counts(session: Session, order_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Return, per order, how many of its leads are in each status."""
    counts: dict[int, dict[str, int]] = {order_id: {} for order_id in order_ids}
    if not counts:
        return counts
    rows = session.execute(
        select(IntegrityLead.order_id, IntegrityLead.status, func.count())
        .where(IntegrityLead.order_id.in_(list(counts)))
        .group_by(IntegrityLead.order_id, IntegrityLead.status)
    ).all()
    for order_id, lead_status, count in rows:
        if order_id is not None:
            counts[order_id][str(lead_status)] = int(count)
    return counts


def order_leads(
    session: Session, *, order_id: int, regions: Sequence[str] | None = None
) -> tuple[InspectionOrder, list[IntegrityLead]]:
    """Return an order in scope and its leads."""
    order = session.get(InspectionOrder, order_id)
    if order is None:
        raise NotFound(f"no inspection order {order_id}")
    if not _in_scope(order.region_code, regions):
        raise Forbidden(f"region {order.region_code} is not one of this caller's regions")
    leads = session.scalars(
        select(IntegrityLead).where(IntegrityLead.order_id == order_id).order_by(IntegrityLead.id)
    )
    return order, list(leads)


def _lead(session: Session, lead_id: int, regions: Sequence[str] | None) -> IntegrityLead:
    """Return a lead in scope, or refuse."""
    lead = session.get(IntegrityLead, lead_id)
    if lead is None:
        raise NotFound(f"no integrity lead {lead_id}")
    if not _in_scope(lead.region_code, regions):
        raise Forbidden(f"region {lead.region_code} is not one of this caller's regions")
    return lead


def _settle_order(session: Session, order_id: int) -> None:
    """Set an order's status from its leads: answered when all are, closed when all reviewed."""
    order = session.get(InspectionOrder, order_id)
    assert order is not None
    statuses = set(
        session.scalars(select(IntegrityLead.status).where(IntegrityLead.order_id == order_id))
    )
    if statuses <= {LeadStatus.CLOSED}:
        order.status, order.closed_at = OrderStatus.CLOSED, utcnow()
    elif statuses <= {LeadStatus.CLOSED, LeadStatus.ANSWERED}:
        order.status = OrderStatus.ANSWERED
    else:
        order.status = OrderStatus.OPEN


def answer_lead(
    session: Session,
    *,
    lead_id: int,
    verdict: LeadVerdict | str,
    amount_to_recover: Decimal,
    answered_by: str,
    note: str | None = None,
    regions: Sequence[str] | None = None,
) -> LeadAnswer:
    """Record an inspector's answer to a lead of an order (again, if the last was returned)."""
    lead = _lead(session, lead_id, regions)
    if lead.status not in (LeadStatus.ORDERED, LeadStatus.ANSWERED) or lead.order_id is None:
        raise LeadRefused(f"lead {lead_id} is {lead.status}: only a lead in an order is answered")
    if amount_to_recover < 0:
        raise LeadRefused("amount_to_recover: must not be negative")
    chosen = LeadVerdict(verdict)
    answer = session.scalars(select(LeadAnswer).where(LeadAnswer.lead_id == lead_id)).first()
    if answer is None:
        answer = LeadAnswer(lead_id=lead_id, order_id=lead.order_id)
        session.add(answer)
    answer.verdict, answer.amount_to_recover, answer.note = chosen, amount_to_recover, note
    answer.answered_by, answer.answered_at = answered_by, utcnow()
    answer.review, answer.reviewed_by, answer.reviewed_at = None, None, None
    answer.return_reason = None
    lead.status = LeadStatus.ANSWERED
    session.flush()
    _settle_order(session, lead.order_id)
    record_audit(
        session, actor=answered_by, action=ANSWER_ACTION, target_type="integrity_lead",
        target_ref=str(lead_id),
        detail={"verdict": chosen.value, "amount_to_recover": str(amount_to_recover)},
    )  # fmt: skip
    return answer


def review_answer(
    session: Session, *, lead_id: int, accept: bool, reviewed_by: str, reason: str | None = None
) -> LeadAnswer:
    """Accept an answer (the lead closes) or return it, with a reason, to be answered again."""
    lead = _lead(session, lead_id, None)
    answer = session.scalars(select(LeadAnswer).where(LeadAnswer.lead_id == lead_id)).first()
    if answer is None or lead.status != LeadStatus.ANSWERED or lead.order_id is None:
        raise LeadRefused(f"lead {lead_id} has no answer awaiting review")
    if answer.answered_by == reviewed_by:
        # Separation of duties: whoever answered may not also approve the answer.
        raise LeadRefused("an answer is reviewed by someone other than who gave it")
    why = (reason or "").strip() or None
    if not accept and why is None:
        # The region answers again: it must learn what was wrong with its answer.
        raise LeadRefused("reason: a returned answer says why it is returned")
    if why is not None and len(why) > RETURN_REASON_MAX:
        raise LeadRefused(f"reason: at most {RETURN_REASON_MAX} characters")
    answer.review = AnswerReview.ACCEPTED if accept else AnswerReview.RETURNED
    answer.reviewed_by, answer.reviewed_at = reviewed_by, utcnow()
    answer.return_reason = None if accept else why
    lead.status = LeadStatus.CLOSED if accept else LeadStatus.ORDERED
    session.flush()
    _settle_order(session, lead.order_id)
    detail: dict[str, str] = {"review": answer.review.value}
    if not accept and why is not None:
        detail["reason"] = why
    record_audit(
        session, actor=reviewed_by, action=REVIEW_ACTION, target_type="integrity_lead",
        target_ref=str(lead_id), detail=detail,
    )  # fmt: skip
    return answer


@dataclass(frozen=True)
class LeadEvent:
    """One step of a lead's history: an answer given, accepted or returned (with its reason)."""

    lead_id: int
    at: dt.datetime
    actor: str
    step: str  # answered, accepted, returned
    verdict: str | None = None
    amount_to_recover: str | None = None
    reason: str | None = None


def lead_history(session: Session, lead_ids: Sequence[int]) -> dict[int, list[LeadEvent]]:
    """Return, per lead, its answers and reviews in order, from the audit log that records them."""
    history: dict[int, list[LeadEvent]] = {lead_id: [] for lead_id in lead_ids}
    if not history:
        return history
    rows = session.execute(
        select(AuditEntry.target_ref, AuditEntry.at, AuditEntry.actor, AuditEntry.action,
               AuditEntry.detail)
        .where(
            AuditEntry.target_type == "integrity_lead",
            AuditEntry.target_ref.in_([str(lead_id) for lead_id in history]),
            AuditEntry.action.in_([ANSWER_ACTION, REVIEW_ACTION]),
        )
        .order_by(AuditEntry.at, AuditEntry.id)
    ).all()  # fmt: skip
    for ref, at, actor, action, detail in rows:
        if action == ANSWER_ACTION:
            event = LeadEvent(
                lead_id=int(ref), at=at, actor=actor, step="answered",
                verdict=detail.get("verdict"), amount_to_recover=detail.get("amount_to_recover"),
            )  # fmt: skip
        else:
            event = LeadEvent(
                lead_id=int(ref), at=at, actor=actor, step=str(detail.get("review")),
                reason=detail.get("reason"),
            )  # fmt: skip
        history[int(ref)].append(event)
    return history


def rule_precision(session: Session, *, by_month: bool = False) -> pd.DataFrame:
    """Return, per rule (and month of review), accepted answers, confirmed share, amounts."""
    rows = session.execute(
        select(
            IntegrityLead.rule, LeadAnswer.verdict,
            type_coerce(LeadAnswer.amount_to_recover, Float), LeadAnswer.reviewed_at,
        )
        .join(LeadAnswer, LeadAnswer.lead_id == IntegrityLead.id)
        .where(LeadAnswer.review == AnswerReview.ACCEPTED)
    ).all()  # fmt: skip
    frame = pd.DataFrame(rows, columns=["rule", "verdict", "amount", "reviewed_at"])
    keys = ["rule", "month"] if by_month else ["rule"]
    frame["month"] = pd.to_datetime(frame["reviewed_at"], utc=True).dt.strftime("%Y-%m")
    for verdict in LeadVerdict:
        frame[verdict.value] = frame["verdict"].eq(verdict.value)
    frame["recovered"] = frame["amount"].where(frame["confirmed"], 0.0)
    totals = frame.groupby(keys, sort=True).agg(
        reviewed=("verdict", "size"),
        confirmed=("confirmed", "sum"),
        explained=("explained", "sum"),
        data_error=("data_error", "sum"),
        recovered=("recovered", "sum"),
    )
    totals["precision"] = totals["confirmed"] / totals["reviewed"]
    return totals.reset_index()
