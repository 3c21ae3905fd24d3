"""Inspection orders over HTTP: created per region, seen and answered in scope, reviewed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from liveness.access import create_client
from liveness.db import session_scope
from models import AuditEntry, Role
from tests.api.conftest import OTHER_REGION, REGION, World

API = "/api/v1"
DUE = (dt.date.today() + dt.timedelta(days=20)).isoformat()


def _answer(world: World, lead: int, role: str, body: dict[str, Any]) -> Any:
    """Answer a lead as a role's client and return the response."""
    return world.client.post(f"{API}/leads/{lead}/answer", json=body, headers=world.auth(role))


def _review(world: World, lead: int, decision: str, reason: str | None = None) -> Any:
    """Review a lead's answer as the operator and return the response."""
    body = {"decision": decision} if reason is None else {"decision": decision, "reason": reason}
    return world.client.post(
        f"{API}/leads/{lead}/review", json=body, headers=world.auth("operator")
    )


def _fields(response: Any) -> set[str]:
    """Return the fields a validation error names."""
    assert response.status_code == 422, response.json()
    body = response.json()
    assert body["error"] == "validation_error", body
    return {item["field"] for item in body["detail"]}


def test_order_lifecycle_over_http(world: World) -> None:
    leads, orders = world.leads, world.orders
    created = world.client.post(
        f"{API}/orders", json={"due_on": DUE}, headers=world.auth("operator")
    )
    assert created.status_code == 201, created.json()
    new = created.json()["orders"]
    assert sorted(o["region_code"] for o in new) == [REGION, OTHER_REGION]
    assert all(o["due_on"] == DUE and o["lead_counts"] == {"ordered": 1} for o in new)
    again = world.client.post(f"{API}/orders", json={}, headers=world.auth("operator"))
    assert again.status_code == 201 and again.json() == {"orders": []}

    # The inspector sees the orders and leads of their region only.
    listed = world.client.get(f"{API}/orders", headers=world.auth("inspector")).json()
    assert {o["region_code"] for o in listed["items"]} == {REGION}
    assert listed["total"] == 2
    everyone = world.client.get(f"{API}/orders", headers=world.auth("auditor")).json()
    assert everyone["total"] == 4
    mine = world.client.get(f"{API}/leads", headers=world.auth("inspector")).json()
    assert {lead["id"] for lead in mine["items"]} == {
        leads["ordered"],
        leads["answered"],
        leads["spare"],
        leads["open_mine"],
    }
    assert all(lead["person_refs"] == ["P1", "P2"] for lead in mine["items"])
    seen = next(lead for lead in mine["items"] if lead["id"] == leads["answered"])
    assert seen["answer"]["verdict"] == "confirmed" and seen["answer"]["review"] is None
    for url in (f"{API}/orders/{orders['other']}",):
        refused = world.client.get(url, headers=world.auth("inspector"))
        assert refused.status_code == 403, refused.json()
    refused = _answer(world, leads["other"], "inspector", {"verdict": "explained"})
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "forbidden",
        "detail": f"region {OTHER_REGION} is not one of this caller's regions",
    }

    confirmed = _answer(
        world, leads["ordered"], "inspector",
        {"verdict": "confirmed", "amount_to_recover": "1200.50", "note": "同一账户"},
    )  # fmt: skip
    assert confirmed.status_code == 200, confirmed.json()
    assert confirmed.json()["lead_status"] == "answered"
    assert confirmed.json()["answered_by"] == "inspector"
    assert _answer(world, leads["spare"], "inspector", {"verdict": "explained"}).status_code == 200
    order = world.client.get(f"{API}/orders/{orders['mine']}", headers=world.auth("inspector"))
    assert order.status_code == 200
    assert order.json()["status"] == "answered"
    assert order.json()["lead_counts"] == {"answered": 3}
    assert [lead["answer"]["verdict"] for lead in order.json()["leads"]] == [
        "confirmed", "confirmed", "explained"
    ]  # fmt: skip

    # The issuing level reviews: two accepted, one returned and answered again.
    assert _review(world, leads["ordered"], "accept").json()["lead_status"] == "closed"
    assert _review(world, leads["answered"], "accept").json()["review"] == "accepted"
    assert _review(world, leads["spare"], "return").status_code == 409  # no reason given
    returned = _review(world, leads["spare"], "return", "no visit note").json()
    assert (returned["lead_status"], returned["review"]) == ("ordered", "returned")
    assert returned["return_reason"] == "no visit note"
    assert _review(world, leads["spare"], "accept").status_code == 409
    again_answered = _answer(world, leads["spare"], "inspector", {"verdict": "data_error"})
    assert again_answered.json()["review"] is None
    assert _review(world, leads["spare"], "accept").status_code == 200
    closed = world.client.get(f"{API}/orders/{orders['mine']}", headers=world.auth("operator"))
    assert closed.json()["status"] == "closed" and closed.json()["closed_at"] is not None
    assert world.client.get(
        f"{API}/orders", params={"status": "closed"}, headers=world.auth("inspector")
    ).json()["total"] == 1  # fmt: skip

    precision = world.client.get(f"{API}/integrity/precision", headers=world.auth("operator"))
    assert precision.status_code == 200
    rows = {row["rule"]: row for row in precision.json()["rules"]}
    assert rows["shared_bank_account"] == {
        "rule": "shared_bank_account", "month": None, "reviewed": 2, "confirmed": 1,
        "explained": 0, "data_error": 1, "precision": 0.5, "recovered": "1200.50",
    }  # fmt: skip
    assert rows["same_demographics"]["precision"] == 1.0
    assert rows["same_demographics"]["recovered"] == "500.00"
    monthly = world.client.get(
        f"{API}/integrity/precision", params={"by_month": True}, headers=world.auth("auditor")
    ).json()
    assert monthly["by_month"] is True
    assert {row["month"] for row in monthly["rules"]} == {dt.datetime.now(dt.UTC).strftime("%Y-%m")}

    with session_scope(world.services.sessions) as session:
        reads = session.query(AuditEntry).filter(AuditEntry.actor == "inspector").all()
        actions = {entry.action for entry in reads}
        assert {"leads.read", "orders.read", "leads.answer", "integrity.lead.answer"} <= actions
        order_read = next(
            e for e in reads if e.action == "orders.read" and e.target_ref == str(orders["mine"])
        )
        assert order_read.detail["leads"] == [leads["ordered"], leads["answered"], leads["spare"]]
        # A refused read leaves no entry claiming that something was read: only its refusal.
        other = [e.action for e in reads if e.target_ref == str(orders["other"])]
        assert other == ["orders.read.refused"]


def test_leads_are_filtered_and_paged(sqlite_world: World) -> None:
    world = sqlite_world
    page = world.client.get(
        f"{API}/leads", params={"limit": 2, "offset": 1}, headers=world.auth("auditor")
    ).json()
    assert page["total"] == 6 and page["limit"] == 2
    assert [lead["id"] for lead in page["items"]] == sorted(world.leads.values())[1:3]
    by_rule = world.client.get(
        f"{API}/leads", params={"rule": "same_demographics"}, headers=world.auth("admin")
    ).json()
    assert {lead["rule"] for lead in by_rule["items"]} == {"same_demographics"}
    opened = world.client.get(
        f"{API}/leads", params={"status": "open", "region": "3307"}, headers=world.auth("admin")
    ).json()
    assert [lead["id"] for lead in opened["items"]] == [world.leads["open_other"]]
    # An inspector asking for a wider region gets its own part of it.
    wide = world.client.get(
        f"{API}/leads", params={"region": "33"}, headers=world.auth("inspector")
    ).json()
    assert {lead["region_code"] for lead in wide["items"]} == {REGION}


def test_an_inspector_of_a_city_sees_its_counties(sqlite_world: World) -> None:
    world = sqlite_world
    with session_scope(world.services.sessions) as session:
        issued = create_client(session, name="city-3307", role=Role.INSPECTOR, regions=["3307"])
    headers = {"Authorization": f"Bearer {issued.token}"}
    orders = world.client.get(f"{API}/orders", headers=headers).json()
    assert [o["id"] for o in orders["items"]] == [world.orders["other"]]
    assert (
        world.client.get(f"{API}/orders/{world.orders['mine']}", headers=headers).status_code == 403
    )
    answered = world.client.post(
        f"{API}/leads/{world.leads['other']}/answer", json={"verdict": "explained"},
        headers=headers,
    )  # fmt: skip
    assert answered.status_code == 200, answered.json()


def test_validation_errors_name_the_field(sqlite_world: World) -> None:
    world = sqlite_world
    lead = world.leads["ordered"]
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "unknown verdict": ({"verdict": "maybe"}, "verdict"),
        "no verdict": ({"amount_to_recover": "1.00"}, "verdict"),
        "negative amount": ({"verdict": "confirmed", "amount_to_recover": "-1"}, "amount_to_recover"),
        "sub-cent amount": ({"verdict": "confirmed", "amount_to_recover": "1.234"},
                            "amount_to_recover"),
        "amount not a number": ({"verdict": "confirmed", "amount_to_recover": "NaN"},
                                "amount_to_recover"),
        "amount infinite": ({"verdict": "confirmed", "amount_to_recover": "Infinity"},
                            "amount_to_recover"),
        "amount too large": ({"verdict": "confirmed", "amount_to_recover": "1e20"},
                             "amount_to_recover"),
        "amount explained": ({"verdict": "explained", "amount_to_recover": "5"},
                             "amount_to_recover"),
        "long note": ({"verdict": "explained", "note": "x" * 2001}, "note"),
        "unknown field": ({"verdict": "explained", "amount": "5"}, "amount"),
    }  # fmt: skip
    for why, (body, field) in cases.items():
        assert field in _fields(_answer(world, lead, "inspector", body)), why
    operator = world.auth("operator")
    past = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    past_due = world.client.post(f"{API}/orders", json={"due_on": past}, headers=operator)
    assert _fields(past_due) == {"due_on"}
    bad_region = world.client.post(f"{API}/orders", json={"regions": ["33010"]}, headers=operator)
    assert _fields(bad_region) == {"regions.0"}
    bad_rule = world.client.post(f"{API}/orders", json={"rule": "weather"}, headers=operator)
    assert bad_rule.status_code == 422
    assert bad_rule.json()["detail"].startswith("rule: 'weather' is not a rule")
    bad_query = world.client.get(f"{API}/leads", params={"rule": "weather"}, headers=operator)
    assert bad_query.status_code == 422 and "rule" in bad_query.json()["detail"]
    assert _fields(world.client.get(f"{API}/leads?status=lost", headers=operator)) == {"status"}
    assert _fields(world.client.get(f"{API}/orders?region=x", headers=operator)) == {"region"}
    review = _review(world, world.leads["answered"], "maybe")
    assert _fields(review) == {"decision"}
    # Nothing was changed by any refused request.
    with session_scope(world.services.sessions) as session:
        assert not session.query(AuditEntry).filter(AuditEntry.action == "leads.answer").count()


def test_answers_are_idempotent_and_reviewed_by_someone_else(sqlite_world: World) -> None:
    world = sqlite_world
    lead = world.leads["ordered"]
    url = f"{API}/leads/{lead}/answer"
    body = {"verdict": "confirmed", "amount_to_recover": "300.00"}
    headers = {**world.auth("admin"), "Idempotency-Key": "answer-1"}
    first = world.client.post(url, json=body, headers=headers)
    second = world.client.post(url, json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    other = world.client.post(url, json={**body, "amount_to_recover": "1.00"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"
    # Whoever answered may not also accept the answer.
    own = world.client.post(
        f"{API}/leads/{lead}/review", json={"decision": "accept"}, headers=world.auth("admin")
    )
    assert own.status_code == 409 and own.json()["error"] == "lead_refused"
    assert _review(world, lead, "accept").status_code == 200
    closed = _answer(world, lead, "inspector", {"verdict": "explained"})
    assert closed.status_code == 409
    assert _answer(world, 2**31 - 1, "inspector", {"verdict": "explained"}).status_code == 404
    assert world.client.get(f"{API}/orders/99999", headers=world.auth("auditor")).status_code == 404
