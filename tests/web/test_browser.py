"""The pages in a real browser: Debian's Chromium, headless, driven by Playwright.

A grid worker signs in on a phone-sized screen, opens the queue, records an outcome and
sees it leave the queue; a supervisor sees the dashboard reflect it; a grid worker cannot
open another grid's task; a supervisor reads the overdue reviews and a benefit's payment
history. Every page is checked for labelled inputs, keyboard use and text
contrast, and photographed into test-artifacts/screenshots/.
"""

from __future__ import annotations

from typing import Any

from liveness.db import session_scope
from models import ListEntry
from tests.api.conftest import World, make_reviews_late
from tests.api.payments import approve, suspend_amend_hold
from tests.web.browsing import (
    DESKTOP,
    PHONE,
    SHOTS,
    check_page,
    sign_in_by_keyboard,
    signed_in_page,
)


def test_a_grid_worker_records_an_outcome_and_the_supervisor_sees_it(
    web_world: World, server: str, browser: Any
) -> None:
    phone = browser.new_context(viewport=PHONE, locale="zh-CN")
    page = phone.new_page()
    page.goto(f"{server}/web/sign-in")
    check_page(page, "01-sign-in")
    sign_in_by_keyboard(page, server, web_world.tokens["grid_worker"])
    assert page.url.endswith("/web/queue")
    task = web_world.tasks["visit_g1_high"]
    assert page.locator(f'[data-task="{task}"]').count() == 1
    check_page(page, "02-queue-phone")

    page.click(f'[data-task="{task}"] a.card-link')
    assert page.url.endswith(f"/web/tasks/{task}")
    check_page(page, "03-task-phone")

    # A moved_away outcome without its region: refused, the error beside the field.
    page.select_option("#outcome", "moved_away")
    page.click("button[type=submit] >> text=提交结果")
    assert page.locator("#region-error").is_visible()
    assert page.get_attribute("#region", "aria-invalid") == "true"
    check_page(page, "04-outcome-errors")

    page.select_option("#outcome", "alive_confirmed")
    page.fill("#region", "")
    page.fill("#note", "本人在家，精神良好")
    page.click("button[type=submit] >> text=提交结果")
    assert "/web/queue?recorded=" in page.url
    assert page.locator(f'[data-task="{task}"]').count() == 0
    assert page.locator("[role=status]").is_visible()
    check_page(page, "05-queue-after-outcome")

    # Another grid's task is not for this worker: answered as if there were none.
    answer = page.goto(f"{server}/web/tasks/{web_world.tasks['visit_g2']}")
    assert answer is not None and answer.status == 404
    check_page(page, "06-other-grid-refused")
    phone.close()

    desk, page = signed_in_page(browser, server, web_world.tokens["operator"], viewport=DESKTOP)
    assert page.url.endswith("/web/dashboard")
    # Five tasks were seeded, one was just settled.
    assert page.locator('[data-figure="open_tasks"]').inner_text() == "4"
    assert page.locator("svg.chart").count() >= 4
    check_page(page, "07-dashboard")
    page.click("text=English")
    assert page.locator("h1").inner_text() == "Certification dashboard"
    check_page(page, "08-dashboard-en")
    page.goto(f"{server}/web/runs/{web_world.run_id}")
    check_page(page, "09-run-report")
    page.goto(f"{server}/web/dashboard")
    page.fill("#ref", "P3")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/web/persons/P3")
    check_page(page, "10-person")
    desk.close()


def test_an_inspector_answers_a_lead_and_the_operator_accepts_it(
    web_world: World, server: str, browser: Any
) -> None:
    phone, page = signed_in_page(browser, server, web_world.tokens["inspector"], viewport=PHONE)
    assert page.url.endswith("/web/orders")
    check_page(page, "11-orders-inspector")
    with page.expect_navigation():
        page.click(f'[data-order="{web_world.orders["mine"]}"] a')
    lead = web_world.leads["ordered"]
    page.select_option(f"#verdict-{lead}", "confirmed")
    page.fill(f"#amount-{lead}", "1200.50")
    page.fill(f"#note-{lead}", "账户由子女代管，已追回")
    with page.expect_navigation():
        page.click(f'[data-lead="{lead}"] button[type=submit]')
    assert page.locator(f'[data-lead="{lead}"] [data-status]').inner_text() == "待审核"
    check_page(page, "12-order-answered")
    phone.close()

    desk, page = signed_in_page(browser, server, web_world.tokens["operator"], viewport=DESKTOP)
    page.goto(f"{server}/web/orders/{web_world.orders['mine']}")
    with page.expect_navigation():
        page.click(f'[data-lead="{lead}"] button[value=accept]')
    assert page.locator(f'[data-lead="{lead}"] [data-status]').inner_text() == "已办结"
    check_page(page, "13-order-reviewed")
    page.goto(f"{server}/web/orders")
    check_page(page, "14-orders-operator")
    desk.close()


def test_a_supervisor_reads_a_payment_history_and_the_overdue_reviews(
    web_world: World, server: str, browser: Any
) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    make_reviews_late(web_world)
    desk, page = signed_in_page(browser, server, web_world.tokens["operator"], viewport=DESKTOP)
    overdue = page.locator('[data-section="overdue"]')
    assert overdue.locator("tbody tr").count() == 2
    assert overdue.locator("tbody tr").first.get_attribute("data-grid") == "G2"
    check_page(page, "15-dashboard-overdue")
    overdue.screenshot(path=str(SHOTS / "15-dashboard-overdue-section.png"))
    with page.expect_navigation():
        overdue.locator('a[href="/web/queue?grid=G2"]').click()
    assert page.url.endswith("/web/queue?grid=G2")

    page.goto(f"{server}/web/persons/P1")
    state = page.locator("[data-benefit] [data-state]").inner_text()
    assert "死亡（由“逾期未认证”变更）" in state and "补发 12,000.00 元）待复核批准" in state
    assert page.locator("table.history tr[data-seq]").count() == 3
    check_page(page, "16-person-payments-held")
    approve(web_world.services, story, operator="operator-2")
    page.reload()
    assert page.locator("[data-benefit] [data-state]").get_attribute("data-state") == "active"
    assert page.locator("table.history tr[data-seq]").count() == 4
    check_page(page, "17-person-payments-approved")
    page.click("text=English")
    assert page.locator("#pay-h").inner_text() == "Payments"
    check_page(page, "18-person-payments-en")
    desk.close()

    phone, page = signed_in_page(browser, server, web_world.tokens["grid_worker"], viewport=PHONE)
    page.goto(f"{server}/web/persons/P1")
    assert page.locator("table.history tr[data-seq]").count() == 4
    check_page(page, "19-person-payments-phone")
    phone.close()


def test_a_grid_workers_day_on_a_phone(web_world: World, server: str, browser: Any) -> None:
    """Queue -> filter -> claim -> task -> deceased, confirmed -> undo -> alive -> my visits."""
    phone, page = signed_in_page(browser, server, web_world.tokens["grid_worker"], viewport=PHONE)
    task = web_world.tasks["visit_g1_high"]
    page.select_option("#kind", "home_visit")
    page.select_option("#sort", "due")
    page.click("button >> text=筛选")
    # The URL changes when the navigation commits, before the filtered queue has loaded: the
    # count is taken on the loaded page (under load it once read the page still loading).
    page.wait_for_load_state()
    assert "kind=home_visit" in page.url and "sort=due" in page.url
    assert page.locator("[data-task]").count() == 2
    check_page(page, "10-day-queue-filtered")

    page.click(f'[data-task="{task}"] button >> text=我去处理')
    assert "kind=home_visit" in page.url  # back to the same filtered queue
    assert page.locator(f'[data-task="{task}"] .claimed').is_visible()
    check_page(page, "11-day-claimed")

    page.click(f'[data-task="{task}"] a.card-link')
    assert page.url.endswith(f"/web/tasks/{task}")
    assert page.locator(".claim >> text=我已领取").is_visible()
    check_page(page, "12-day-task")

    page.select_option("#outcome", "deceased")
    page.click("button[type=submit] >> text=提交结果")
    assert page.locator("h1 >> text=确认：记录为已死亡").is_visible()
    check_page(page, "13-day-confirm-deceased")
    page.fill("#died_on", "2025-05-01")
    page.click("button >> text=确认已死亡")
    assert "/web/queue?recorded=" in page.url
    assert page.locator(f'[data-task="{task}"]').count() == 0
    check_page(page, "14-day-recorded")

    page.click("[role=status] button >> text=撤销结果")
    assert page.url.endswith(f"/web/tasks/{task}?done=undone")
    assert page.locator("#outcome").is_visible()
    check_page(page, "15-day-undone")

    page.select_option("#outcome", "alive_confirmed")
    page.click("button[type=submit] >> text=提交结果")
    page.click("nav >> text=我的走访")
    assert page.url.endswith("/web/visits")
    assert page.locator(f'[data-task="{task}"] [data-outcome="alive_confirmed"]').is_visible()
    check_page(page, "16-day-my-visits")
    phone.close()


def test_a_supervisor_approves_a_held_reinstatement(
    web_world: World, server: str, browser: Any
) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    own = suspend_amend_hold(web_world.services, person_ref="P2", run_id=web_world.run_id)
    with session_scope(web_world.services.sessions) as session:
        session.get_one(ListEntry, own.held_id).caused_by = "operator"
    desk, page = signed_in_page(browser, server, web_world.tokens["operator"], viewport=DESKTOP)
    with page.expect_navigation():
        page.click('nav a[href="/web/approvals"]')
    # The operator's own entry: both decisions disabled, and why.
    mine = page.locator(f'[data-entry="{own.held_id}"]')
    assert mine.locator("button[type=submit]").first.is_disabled()
    assert mine.locator(f"#own-{own.held_id}").is_visible()
    card = page.locator(f'[data-entry="{story.held_id}"]')
    assert card.locator(".amount").inner_text() == "¥12,000.00"
    assert card.locator("button[type=submit]").first.is_enabled()
    check_page(page, "20-approvals")
    with page.expect_navigation():
        card.locator("button[type=submit]").first.click()
    assert page.locator("[role=status]").is_visible()
    assert page.locator(f'[data-entry="{story.held_id}"]').count() == 0
    assert page.locator(f'[data-entry="{own.held_id}"]').count() == 1
    check_page(page, "21-approvals-approved")
    page.goto(f"{server}/web/persons/P1")
    assert page.locator(f'tr[data-seq="{story.held_seq}"]').get_attribute("data-standing") == (
        "approved"
    )
    desk.close()
