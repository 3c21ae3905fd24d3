"""Inspection order pages: an inspector answers their region's leads, an operator reviews."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.web.orders import masked
from liveness.db import session_scope
from models import IntegrityLead, LeadStatus
from tests.api.conftest import World
from tests.web.conftest import csrf_of, sign_in


def browser_of(world: World, role: str) -> TestClient:
    """Return a new browser signed in as a role's client."""
    client = TestClient(world.client.app, follow_redirects=False)
    sign_in(client, world.tokens[role])
    return client


def _status(world: World, lead_id: int) -> str:
    with session_scope(world.services.sessions) as session:
        lead = session.get(IntegrityLead, lead_id)
        assert lead is not None
        return str(lead.status)


def test_an_inspector_sees_only_their_regions_orders(web_world: World) -> None:
    client = TestClient(web_world.client.app, follow_redirects=False)
    assert sign_in(client, web_world.tokens["inspector"]).headers["location"] == "/web/orders"
    page = client.get("/web/orders").text
    shown = {int(x) for x in re.findall(r'data-order="(\d+)"', page)}
    assert shown == {web_world.orders["mine"]}
    assert "下发检查订单" not in page  # inspectors do not issue orders
    assert client.get(f"/web/orders/{web_world.orders['other']}").status_code == 403
    mine = client.get(f"/web/orders/{web_world.orders['mine']}")
    assert mine.status_code == 200
    assert f'id="verdict-{web_world.leads["ordered"]}"' in mine.text
    # The answered lead awaits review: no form for it.
    assert f'id="verdict-{web_world.leads["answered"]}"' not in mine.text
    assert client.get("/web/dashboard").status_code == 403


def test_an_answer_with_a_bad_amount_is_refused_beside_the_field(web_world: World) -> None:
    client = browser_of(web_world, "inspector")
    lead = web_world.leads["ordered"]
    csrf = csrf_of(client.get(f"/web/orders/{web_world.orders['mine']}").text)
    for verdict, amount in (("confirmed", "12.345"), ("confirmed", "-1"), ("explained", "10")):
        answer = client.post(
            f"/web/leads/{lead}/answer",
            data={"csrf_token": csrf, "verdict": verdict, "amount": amount},
        )
        assert answer.status_code == 422, (verdict, amount)
        assert f'id="amount-{lead}-error"' in answer.text
    assert _status(web_world, lead) == LeadStatus.ORDERED


def test_an_inspector_answers_and_an_operator_reviews(web_world: World) -> None:
    inspector = browser_of(web_world, "inspector")
    lead = web_world.leads["ordered"]
    csrf = csrf_of(inspector.get(f"/web/orders/{web_world.orders['mine']}").text)
    answer = inspector.post(
        f"/web/leads/{lead}/answer",
        data={"csrf_token": csrf, "verdict": "confirmed", "amount": "1200.50", "note": "核实"},
    )
    assert answer.status_code == 303
    assert _status(web_world, lead) == LeadStatus.ANSWERED
    # Another region's lead, and reviewing, are not the inspector's.
    other = inspector.post(
        f"/web/leads/{web_world.leads['other']}/answer",
        data={"csrf_token": csrf, "verdict": "explained", "amount": "0"},
    )
    assert other.status_code == 403
    assert (
        inspector.post(
            f"/web/leads/{lead}/review", data={"csrf_token": csrf, "decision": "accept"}
        ).status_code
        == 403
    )

    operator = browser_of(web_world, "operator")
    page = operator.get(f"/web/orders/{web_world.orders['mine']}")
    assert 'value="accept"' in page.text
    accepted = operator.post(
        f"/web/leads/{lead}/review", data={"csrf_token": csrf_of(page.text), "decision": "accept"}
    )
    assert accepted.status_code == 303
    assert _status(web_world, lead) == LeadStatus.CLOSED
    returned = operator.post(
        f"/web/leads/{web_world.leads['answered']}/review",
        data={"csrf_token": csrf_of(page.text), "decision": "return"},
    )
    assert returned.status_code == 303
    assert _status(web_world, web_world.leads["answered"]) == LeadStatus.ORDERED
    # The rule's feedback counts the accepted answer.
    listing = operator.get("/web/orders").text
    assert "规则成效" in listing and "1,200.50" in listing


def test_an_operator_issues_orders_for_the_open_leads(web_world: World) -> None:
    operator = browser_of(web_world, "operator")
    page = operator.get("/web/orders")
    csrf = csrf_of(page.text)
    bad = operator.post("/web/orders", data={"csrf_token": csrf, "due_on": "2020-01-01"})
    assert bad.status_code == 422 and 'id="due_on-error"' in bad.text
    issued = operator.post(
        "/web/orders", data={"csrf_token": csrf, "due_on": "2099-01-01", "rule": ""}
    )
    assert issued.status_code == 303 and issued.headers["location"] == "/web/orders?created=2"
    assert _status(web_world, web_world.leads["open_mine"]) == LeadStatus.ORDERED
    assert _status(web_world, web_world.leads["open_other"]) == LeadStatus.ORDERED
    worker = browser_of(web_world, "grid_worker")
    assert worker.get("/web/orders").status_code == 403


def test_identity_numbers_in_evidence_are_masked() -> None:
    evidence = {"persons": [{"id_number": "330102195001010011", "name": "张三"}],
                "numbers": {"old_id_number": "330102195001010022"}}  # fmt: skip
    shown = masked(evidence)
    assert shown["persons"][0]["id_number"] == "330102********0011"
    assert shown["numbers"]["old_id_number"] == "330102********0022"
    assert shown["persons"][0]["name"] == "张三"
