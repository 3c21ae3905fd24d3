"""Inspection orders: per region, answered in scope, reviewed by another, fed back as precision."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from liveness.access.service import Forbidden
from liveness.db import session_scope
from liveness.errors import ConfigurationError
from liveness.integrity import (
    LeadRefused,
    LeadsDateInvalid,
    answer_lead,
    create_orders,
    current_leads,
    lead_history,
    list_orders,
    load_integrity_policy,
    order_leads,
    refresh_leads,
    review_answer,
    rule_precision,
)
from liveness.services import Services
from models import AuditEntry, IntegrityLead, LeadStatus, OrderStatus
from tests.liveness.conftest import REPO

DUE = dt.date(2025, 7, 1)


def _lead(session: Session, *, rule: str, key: str, region: str) -> IntegrityLead:
    lead = IntegrityLead(
        rule=rule, key=key, region_code=region, person_refs=[f"P{key}"], evidence={"k": key},
        amount_at_risk=Decimal("100.00"), status=LeadStatus.OPEN, policy_version="test",
        found_on=dt.date(2025, 6, 1),
    )  # fmt: skip
    session.add(lead)
    session.flush()
    return lead


def test_order_lifecycle_scope_and_precision(session: Session) -> None:
    a1 = _lead(session, rule="shared_bank_account", key="1", region="330702")
    a2 = _lead(session, rule="same_demographics", key="2", region="330702")
    b1 = _lead(session, rule="shared_bank_account", key="3", region="330782")

    orders = create_orders(session, due_on=DUE, issued_by="city")
    assert sorted(o.region_code for o in orders) == ["330702", "330782"]
    assert {lead.status for lead in (a1, a2, b1)} == {LeadStatus.ORDERED}
    assert create_orders(session, due_on=DUE, issued_by="city") == []
    order_a = next(o for o in orders if o.region_code == "330702")
    _, leads = order_leads(session, order_id=order_a.id, regions=["330702"])
    assert [lead.id for lead in leads] == [a1.id, a2.id]

    # An inspector of one region neither sees nor answers another region's leads.
    with pytest.raises(Forbidden):
        order_leads(session, order_id=order_a.id, regions=["330782"])
    with pytest.raises(Forbidden):
        answer_lead(
            session, lead_id=b1.id, verdict="confirmed", amount_to_recover=Decimal(1),
            answered_by="inspector-a", regions=["330702"],
        )  # fmt: skip
    assert [o.region_code for o in list_orders(session, regions=["330782"])] == ["330782"]

    answer_lead(
        session, lead_id=a1.id, verdict="confirmed", amount_to_recover=Decimal("1200.50"),
        answered_by="inspector-a", regions=["330702"],
    )  # fmt: skip
    answer_lead(
        session, lead_id=a2.id, verdict="explained", amount_to_recover=Decimal(0),
        answered_by="inspector-a", regions=["330702"],
    )  # fmt: skip
    assert order_a.status == OrderStatus.ANSWERED
    with pytest.raises(LeadRefused):
        review_answer(session, lead_id=a1.id, accept=True, reviewed_by="inspector-a")

    review_answer(session, lead_id=a1.id, accept=True, reviewed_by="city")
    with pytest.raises(LeadRefused):  # a return says why
        review_answer(session, lead_id=a2.id, accept=False, reviewed_by="city", reason="  ")
    assert a2.status == LeadStatus.ANSWERED
    review_answer(
        session, lead_id=a2.id, accept=False, reviewed_by="city", reason="no visit note attached"
    )
    assert a2.status == LeadStatus.ORDERED and order_a.status == OrderStatus.OPEN
    returned = lead_history(session, [a2.id])[a2.id]
    assert [(e.step, e.actor, e.reason) for e in returned] == [
        ("answered", "inspector-a", None), ("returned", "city", "no visit note attached"),
    ]  # fmt: skip
    answer_lead(
        session, lead_id=a2.id, verdict="data_error", amount_to_recover=Decimal(0),
        answered_by="inspector-a",
    )  # fmt: skip
    review_answer(session, lead_id=a2.id, accept=True, reviewed_by="city")
    assert order_a.status == OrderStatus.CLOSED
    assert a1.status == LeadStatus.CLOSED
    assert [lead.id for lead in current_leads(session)] == [b1.id]
    with pytest.raises(LeadRefused):
        answer_lead(
            session, lead_id=a1.id, verdict="explained", amount_to_recover=Decimal(0),
            answered_by="inspector-a",
        )  # fmt: skip

    precision = rule_precision(session).set_index("rule")
    assert precision.loc["shared_bank_account", "precision"] == 1.0
    assert precision.loc["shared_bank_account", "recovered"] == pytest.approx(1200.50)
    assert precision.loc["same_demographics", "precision"] == 0.0
    assert precision.loc["same_demographics", "data_error"] == 1
    assert len(rule_precision(session, by_month=True)) == 2
    actions = {e.action for e in session.query(AuditEntry).filter(AuditEntry.actor == "city")}
    assert {"integrity.order.create", "integrity.lead.review"} <= actions


def test_rules_on_an_empty_roll_find_nothing(services_factory: Callable[[str], Services]) -> None:
    services = services_factory("sqlite")
    policy = load_integrity_policy(REPO / "config" / "integrity.toml")
    with session_scope(services.sessions) as session:
        report = refresh_leads(session, store=services.store, policy=policy, as_of=DUE, today=DUE)
    assert (report.found, report.new, report.withdrawn) == (0, 0, 0)


def test_detection_never_goes_back_nor_ahead(
    services_factory: Callable[[str], Services],
) -> None:
    # Detecting as of an earlier day found none of the later findings and withdrew their open
    # leads for good (`leads --as-of 1900-01-01` withdrew 49 of a demo's 54).
    services = services_factory("sqlite")
    policy = load_integrity_policy(REPO / "config" / "integrity.toml")
    with session_scope(services.sessions) as session:
        lead = _lead(session, rule="shared_bank_account", key="1", region="330702")
        for as_of, today in ((dt.date(2025, 5, 31), DUE), (DUE, dt.date(2025, 6, 30))):
            with pytest.raises(LeadsDateInvalid, match="--as-of"):
                refresh_leads(
                    session, store=services.store, policy=policy, as_of=as_of, today=today
                )
        assert lead.status == LeadStatus.OPEN
        # The day the lead was found, and later days, are detection days like any other.
        refresh_leads(session, store=services.store, policy=policy, as_of=DUE, today=DUE)


def test_a_bad_policy_is_refused(tmp_path: Path) -> None:
    text = (REPO / "config" / "integrity.toml").read_text(encoding="utf-8")
    path = tmp_path / "integrity.toml"
    path.write_text(text.replace("min_persons = 2", "min_persons = 1"), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="min_persons"):
        load_integrity_policy(path)
    path.write_text(text + "\n[weather]\nenabled = true\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="weather"):
        load_integrity_policy(path)
