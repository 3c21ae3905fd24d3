"""Inspection order pages: an inspector answers their region's leads, an operator reviews."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from liveness.db import session_scope
from liveness.views.masking import mask_evidence as masked
from models import IntegrityLead, LeadAnswer, LeadStatus
from tests.api.conftest import World
from tests.web.conftest import csrf_of, sign_in, signed_in


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
    client = signed_in(web_world, "inspector")
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
    inspector = signed_in(web_world, "inspector")
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

    operator = signed_in(web_world, "operator")
    page = operator.get(f"/web/orders/{web_world.orders['mine']}")
    assert 'value="accept"' in page.text
    accepted = operator.post(
        f"/web/leads/{lead}/review", data={"csrf_token": csrf_of(page.text), "decision": "accept"}
    )
    assert accepted.status_code == 303
    assert _status(web_world, lead) == LeadStatus.CLOSED
    answered = web_world.leads["answered"]
    # A return without a reason is refused, the error inside that lead's block.
    refused = operator.post(
        f"/web/leads/{answered}/review",
        data={"csrf_token": csrf_of(page.text), "decision": "return", "reason": "  "},
    )
    assert refused.status_code == 422
    block = _lead_block(refused.text, answered)
    assert f'id="reason-{answered}-error"' in block and "退回须填写理由" in block
    assert 'role="alert"' in block and 'role="alert"' not in _lead_block(refused.text, lead)
    assert f'action="/web/leads/{answered}/review#lead-{answered}"' in block
    assert _status(web_world, answered) == LeadStatus.ANSWERED
    returned = operator.post(
        f"/web/leads/{answered}/review",
        data={"csrf_token": csrf_of(page.text), "decision": "return", "reason": "缺少走访记录"},
    )
    assert returned.status_code == 303
    assert returned.headers["location"].endswith(f"#lead-{answered}")
    assert _status(web_world, answered) == LeadStatus.ORDERED
    with session_scope(web_world.services.sessions) as session:
        kept = session.scalars(select(LeadAnswer).where(LeadAnswer.lead_id == answered)).one()
        assert (kept.review, kept.return_reason) == ("returned", "缺少走访记录")
    # The inspector sees why, in the lead's history, beside the form to answer again.
    shown = _lead_block(inspector.get(f"/web/orders/{web_world.orders['mine']}").text, answered)
    assert f'id="verdict-{answered}"' in shown
    history = shown[shown.index(f'data-history="{answered}"') :]
    assert "退回重查" in history and "缺少走访记录" in history and "operator" in history
    # The rule's feedback counts the accepted answer.
    listing = operator.get("/web/orders").text
    assert "规则成效" in listing and "1,200.50" in listing


def test_an_operator_issues_orders_for_the_open_leads(web_world: World) -> None:
    operator = signed_in(web_world, "operator")
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
    worker = signed_in(web_world, "grid_worker")
    assert worker.get("/web/orders").status_code == 403


def _lead_block(page: str, lead: int) -> str:
    """Return the HTML of one lead's section of an order page."""
    start = page.index(f'id="lead-{lead}"')
    return page[start : page.index("</section>", start)]


def test_an_answer_refused_is_shown_at_its_lead(web_world: World) -> None:
    client = signed_in(web_world, "inspector")
    lead = web_world.leads["ordered"]
    csrf = csrf_of(client.get(f"/web/orders/{web_world.orders['mine']}").text)
    answer = client.post(f"/web/leads/{lead}/answer", data={"csrf_token": csrf, "amount": "x"})
    assert answer.status_code == 422
    block = _lead_block(answer.text, lead)
    assert f'action="/web/leads/{lead}/answer#lead-{lead}"' in block
    assert f'id="verdict-{lead}-error"' in block and f'id="amount-{lead}-error"' in block
    # Nothing of the error outside the lead: not above the first lead, not in another one.
    head = answer.text[: answer.text.index('id="lead-')]
    assert 'class="error"' not in head and 'role="alert"' not in head
    # More than the database keeps (NUMERIC(12, 2)) is refused at the field too, not a 500.
    for too_much in ("1e20", "10000000000"):
        large = client.post(
            f"/web/leads/{lead}/answer",
            data={"csrf_token": csrf, "verdict": "confirmed", "amount": too_much},
        )
        assert large.status_code == 422, too_much
        assert f'id="amount-{lead}-error"' in _lead_block(large.text, lead)


def test_evidence_is_labelled_rows_in_words_with_numbers_masked(web_world: World) -> None:
    number = web_world.id_numbers["P1"]
    account, card = "6222020200112233445", "6217001234567890"
    evidence = {
        "bank_account": account, "died_on": "2025-03-02", "death_sources": "cremation",
        "traces": 2,
        "listed": [{"source": "card_txn", "record_id": "t-9", "day": "2025-04-01",
                    "kind": "auto_debit", "card": card}],
        "persons": [{"person_ref": "P1", "id_number": number, "name": "甲", "region_code": "330102",
                     "monthly_amount": 3210.5}],
    }  # fmt: skip
    with session_scope(web_world.services.sessions) as session:
        session.get_one(IntegrityLead, web_world.leads["ordered"]).evidence = evidence
    client = signed_in(web_world, "inspector")
    url = f"/web/orders/{web_world.orders['mine']}"
    page = html.unescape(client.get(url).text)
    block = _lead_block(page, web_world.leads["ordered"])
    for secret in (number, account, card):
        assert secret not in page
    assert number[:6] + "*" * 8 + number[-4:] in block
    assert "*" * 15 + "3445" in block and "*" * 12 + "7890" in block
    for words in ("银行账号", "死亡日期", "2025-03-02", "火化", "市民卡", "自动扣款", "¥3,210.50",
                  "身份证号", "¥6,000.00"):  # fmt: skip
        assert words in block, words
    assert "{" not in block and "card_txn" not in block and "auto_debit" not in block
    english = _lead_block(
        html.unescape(client.get(f"{url}?lang=en").text), web_world.leads["ordered"]
    )
    for words in ("Bank account", "Date of death", "Identity number", "Monthly benefit"):
        assert words in english, words


def test_identity_numbers_in_evidence_are_masked() -> None:
    evidence = {"persons": [{"id_number": "330102195001010011", "name": "张三"}],
                "numbers": {"old_id_number": "330102195001010022"}}  # fmt: skip
    shown = masked(evidence)
    assert shown["persons"][0]["id_number"] == "330102********0011"
    assert shown["numbers"]["old_id_number"] == "330102********0022"
    assert shown["persons"][0]["name"] == "张三"
