"""The approvals inbox: held reinstatements wait for a second operator, who approves or rejects."""

from __future__ import annotations

import html

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.web import approvals
from liveness.db import session_scope
from models import AuditEntry, Benefit, BenefitStatus, ListEntry
from tests.api.conftest import World
from tests.api.payments import Story, suspend_amend_hold
from tests.web.conftest import csrf_of, signed_in


def _inbox(client: TestClient, lang: str = "zh") -> str:
    answer = client.get(f"/web/approvals?lang={lang}")
    assert answer.status_code == 200, answer.text
    return html.unescape(answer.text)


def _post(client: TestClient, path: str, **form: str) -> tuple[int, str]:
    token = csrf_of(client.get("/web/approvals").text)
    answer = client.post(path, data={"csrf_token": token, **form})
    return answer.status_code, html.unescape(answer.text)


def _held_by(world: World, story: Story, caused_by: str) -> None:
    with session_scope(world.services.sessions) as session:
        session.get_one(ListEntry, story.held_id).caused_by = caused_by


def _audit(world: World, action: str, ref: int) -> list[dict[str, object]]:
    with session_scope(world.services.sessions) as session:
        return list(
            session.scalars(
                select(AuditEntry.detail).where(
                    AuditEntry.action == action, AuditEntry.target_ref == str(ref)
                )
            )
        )


def test_the_inbox_lists_what_waits_and_the_one_who_caused_it_cannot_approve(
    web_world: World,
) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    _held_by(web_world, story, "operator")
    operator = signed_in(web_world, "operator")
    page = _inbox(operator)
    assert '<a href="/web/approvals"' in page  # in the navigation
    # Only P1's entry waits: the world's other held entry is no longer held by its benefit.
    assert page.count('class="approval card"') == 1
    assert f'data-entry="{story.held_id}"' in page
    assert "¥12,000.00" in page and "2025-10-01" in page and 'href="/web/persons/P1"' in page
    number = web_world.id_numbers["P1"]
    assert number not in page and number[-4:] in page
    assert "此条由您发起" in page
    assert f'<button type="submit" disabled aria-describedby="own-{story.held_id}"' in page
    english = _inbox(operator, "en")
    assert "proof of life" in english.lower() and "Approve" in english
    _inbox(operator, "zh")  # back to Chinese: the refusal answers in the page's language

    status, answer = _post(operator, f"/web/approvals/{story.held_id}/approve")
    assert status == 409 and "您不能批准" in answer and 'lang="zh-CN"' in answer
    refused = _audit(web_world, "lists.approve.refused", story.held_id)
    assert len(refused) == 1 and refused[0]["via"] == "web"
    assert _audit(web_world, "lists.approve", story.held_id) == []
    status, _ = _post(operator, f"/web/approvals/{story.held_id}/reject", reason="wrong")
    assert status == 409 and len(_audit(web_world, "lists.reject.refused", story.held_id)) == 1

    admin = signed_in(web_world, "admin")
    assert f'data-entry="{story.held_id}"' in _inbox(admin)
    status, _ = _post(admin, f"/web/approvals/{story.held_id}/approve")
    assert status == 303
    done = html.unescape(admin.get(f"/web/approvals?done=approved&entry={story.held_id}").text)
    assert "已批准：恢复发放已发布" in done and 'class="approval card"' not in done
    assert len(_audit(web_world, "lists.approve", story.held_id)) == 1
    feed = web_world.client.get("/api/v1/lists/entries", headers=web_world.auth("payment"))
    last = feed.json()["entries"][-1]
    assert (last["action"], last["approves_seq"], last["person_ref"]) == (
        "reinstate", story.held_seq, "P1",
    )  # fmt: skip
    with session_scope(web_world.services.sessions) as session:
        benefit = session.get_one(Benefit, story.benefit_id)
        assert (benefit.status, benefit.held_entry_id) == (BenefitStatus.ACTIVE, None)
    # Approved once: a second approval is refused, on record.
    status, answer = _post(admin, f"/web/approvals/{story.held_id}/approve")
    assert status == 409 and "不再等待批准" in answer


def test_a_rejection_keeps_the_suspension_and_leaves_the_inbox(web_world: World) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    operator = signed_in(web_world, "operator")
    feed_before = web_world.client.get(
        "/api/v1/lists/entries", headers=web_world.auth("payment")
    ).json()["entries"]
    status, answer = _post(operator, f"/web/approvals/{story.held_id}/reject", reason="  ")
    assert status == 422 and "驳回须填写理由" in answer
    assert len(_audit(web_world, "lists.reject.refused", story.held_id)) == 1

    status, _ = _post(
        operator, f"/web/approvals/{story.held_id}/reject", reason="visit note contradicts"
    )
    assert status == 303
    page = html.unescape(operator.get(f"/web/approvals?done=rejected&entry={story.held_id}").text)
    assert "已驳回：继续暂停发放" in page and 'class="approval card"' not in page
    assert _audit(web_world, "lists.reject", story.held_id) == [
        {"reason": "visit note contradicts", "via": "web"}
    ]
    with session_scope(web_world.services.sessions) as session:
        benefit = session.get_one(Benefit, story.benefit_id)
        held = session.get_one(ListEntry, story.held_id)
        assert (benefit.status, benefit.suspension_reason, benefit.held_entry_id) == (
            BenefitStatus.SUSPENDED, "deceased", None,
        )  # fmt: skip
        assert (held.rejected_by, held.rejection_reason) == ("operator", "visit note contradicts")
    # The payment system hears nothing: no entry was published.
    feed_after = web_world.client.get(
        "/api/v1/lists/entries", headers=web_world.auth("payment")
    ).json()["entries"]
    assert feed_after == feed_before
    person = html.unescape(operator.get("/web/persons/P1").text)
    assert 'data-standing="rejected"' in person and "待复核批准" not in person
    # A rejected entry can be neither approved nor rejected again.
    admin = signed_in(web_world, "admin")
    assert _post(admin, f"/web/approvals/{story.held_id}/approve")[0] == 409


def test_the_api_rejects_with_a_reason_and_refuses_the_one_who_caused_it(
    web_world: World,
) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    _held_by(web_world, story, "operator")
    url = f"/api/v1/lists/entries/{story.held_id}/reject"
    client = web_world.client
    assert (
        client.post(url, json={"reason": "x"}, headers=web_world.auth("grid_worker")).status_code
        == 403
    )
    assert (
        client.post(url, json={"reason": "x"}, headers=web_world.auth("operator")).status_code
        == 409
    )
    assert client.post(url, json={"reason": ""}, headers=web_world.auth("admin")).status_code == 422
    answer = client.post(url, json={"reason": "no proof"}, headers=web_world.auth("admin"))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["rejected_by"], answer.json()["rejection_reason"]) == (
        "admin",
        "no proof",
    )
    assert len(_audit(web_world, "lists.reject.refused", story.held_id)) == 1
    approve = client.post(
        f"/api/v1/lists/entries/{story.held_id}/approve", headers=web_world.auth("admin")
    )
    assert approve.status_code == 409


def test_the_inbox_is_paged_oldest_first(web_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(approvals, "PAGE_SIZE", 1)
    first = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    second = suspend_amend_hold(web_world.services, person_ref="P2", run_id=web_world.run_id)
    operator = signed_in(web_world, "operator")
    page = _inbox(operator)
    assert f'data-entry="{first.held_id}"' in page and f'data-entry="{second.held_id}"' not in page
    assert 'href="/web/approvals?page=2" rel="next"' in page and "共 2 条待批准" in page
    later = html.unescape(operator.get("/web/approvals?page=2").text)
    assert f'data-entry="{second.held_id}"' in later and 'rel="prev"' in later
