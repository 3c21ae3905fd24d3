"""A supervisor approves a held reinstatement in Chromium, on a phone (390x844).

One operator caused the hold; a different operator signs in, opens the approvals inbox,
approves, and sees the entry leave the inbox and stand approved in the person's payment
history. Each step is checked (labels, contrast) and photographed into the artifacts.
"""

from __future__ import annotations

from typing import Any

from liveness.access import create_client
from liveness.db import session_scope
from models import ListEntry, Role
from tests.api.conftest import World
from tests.api.payments import suspend_amend_hold
from tests.web.browsing import PHONE, check_page, serving, signed_in_page


def test_a_second_supervisor_approves_a_held_reinstatement_on_a_phone(
    web_world: World, browser: Any
) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    with session_scope(web_world.services.sessions) as session:
        session.get_one(ListEntry, story.held_id).caused_by = "operator"
        second = create_client(session, name="operator-2", role=Role.OPERATOR).token
    with serving(web_world.client.app) as base:
        phone, page = signed_in_page(browser, base, second, viewport=PHONE)
        check_page(page, "approval-01-signed-in")
        page.click('nav a[href="/web/approvals"]')
        card = page.locator(f'li.approval[data-entry="{story.held_id}"]')
        assert card.count() == 1
        assert "¥12,000.00" in card.inner_text()
        assert card.locator("button:has-text('批准')").is_enabled()  # not this one's own entry
        check_page(page, "approval-02-inbox")

        card.locator("button:has-text('批准')").click()
        page.wait_for_url(f"**/web/approvals?done=approved&entry={story.held_id}")
        assert "已批准" in page.locator("[role=status]").inner_text()
        assert page.locator(f'li.approval[data-entry="{story.held_id}"]').count() == 0
        check_page(page, "approval-03-approved")

        page.goto(f"{base}/web/persons/{story.person_ref}")
        held = page.locator(f'tr[data-seq="{story.held_seq}"]')
        assert held.get_attribute("data-standing") == "approved"
        assert "operator-2" in held.inner_text()
        check_page(page, "approval-04-person-history")
        phone.close()
    with session_scope(web_world.services.sessions) as session:
        assert session.get_one(ListEntry, story.held_id).approved_by == "operator-2"
