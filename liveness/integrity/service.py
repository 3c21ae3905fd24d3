"""Integrity leads and inspection orders: detect, store, package per region, answer, review."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.access.audit import record_audit
from liveness.access.service import Forbidden
from liveness.errors import InputInvalid, NotFound, StateRefused
from liveness.evidence.store import EvidenceStore
from liveness.integrity import rules
from liveness.integrity.policy import RULES, IntegrityPolicy
from liveness.integrity.queries import (
    ANSWER_ACTION,
    CURRENT,
    REVIEW_ACTION,
    _in_scope,
    current_leads,
)
from liveness.integrity.rule_inputs import (
    acting_deaths,
    deregistrations,
    face_passes,
    placing_outcomes,
    roll_persons,
    traces_of,
)
from models import (
    AnswerReview,
    InspectionOrder,
    IntegrityLead,
    LeadAnswer,
    LeadStatus,
    LeadVerdict,
    OrderStatus,
    RecordStatus,
    utcnow,
)

# The column's size (lead_answers.return_reason): a reason, not a report.
RETURN_REASON_MAX = 500
# The column's size (integrity_leads.key).
KEY_MAX = 128


class LeadRefused(StateRefused):
    """A change to a lead or an order that its state does not allow."""


class LeadsDateInvalid(InputInvalid):
    """A detection day after today or before the latest detection: leads would be withdrawn."""


class AmountInvalid(InputInvalid):
    """An amount to recover that is no sum of money to the fen; the message names the field."""


# Long by design: a dispatch over the enabled rules, each fed the frames it needs.
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


def _stored_key(key: str) -> str:
    """Return a finding's key as stored: itself if it fits the column, else a digest of it."""
    # A `same_demographics` key joins the group's identity numbers: seven or more overflow the
    # column, which failed the whole refresh on PostgreSQL (and was kept whole on SQLite).
    # The digest of the same numbers is the same on every detection, so the lead stays one.
    if len(key) <= KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


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
    today: dt.date,
) -> RefreshReport:
    """Detect and store leads: new ones open, known ones updated, vanished open ones withdrawn.

    Detection moves forward: a day after `today`, or before the latest day leads were found
    on, is refused. As of an earlier day the later findings would be missing, so their open
    leads would be withdrawn, and a withdrawn lead is never opened again.
    """
    if as_of > today:
        raise LeadsDateInvalid(f"--as-of {as_of} is after today ({today}): nothing is known yet")
    latest = session.scalar(select(func.max(IntegrityLead.found_on)))
    if latest is not None and as_of < latest:
        raise LeadsDateInvalid(
            f"--as-of {as_of} is before {latest}, when leads were last found: detecting as of "
            "an earlier day would withdraw the later findings"
        )
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
        pair = (str(row.rule), _stored_key(str(row.key)))
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


# The largest amount the database keeps (NUMERIC(12, 2), models.base.Money).
MOST_YUAN = Decimal("9999999999.99")


def parse_yuan(text: str) -> Decimal:
    """Read an amount in yuan as typed (`1234.5`); refuse what is not one, naming the field."""
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise AmountInvalid(f"amount_to_recover: {text!r} is not an amount in yuan") from None


def _check_amount(amount: Decimal, *, verdict: LeadVerdict) -> None:
    """Refuse an amount that is no sum of money to the fen, or that its verdict does not have."""
    if not amount.is_finite():
        raise AmountInvalid(f"amount_to_recover: {amount} is not an amount in yuan")
    if amount < 0:
        raise AmountInvalid("amount_to_recover: must not be negative")
    if amount > MOST_YUAN:
        raise AmountInvalid(f"amount_to_recover: {amount} is more than {MOST_YUAN}")
    if amount != amount.quantize(Decimal("0.01")):
        raise AmountInvalid(f"amount_to_recover: {amount} is not to the fen (two decimals at most)")
    if amount > 0 and verdict != LeadVerdict.CONFIRMED:
        raise AmountInvalid(
            f"amount_to_recover: only a confirmed lead has an amount to recover, not {verdict}"
        )


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
    chosen = LeadVerdict(verdict)
    _check_amount(amount_to_recover, verdict=chosen)
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
