"""A grid worker's forms: nothing typed is lost to an ended session, errors are where the eye
is, and switching language keeps the page's query and the form's values."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update

import liveness.review.service as review_service
from api.web.i18n import catalogue, translate
from api.web.reasons import REASON_MESSAGES, plain_reasons
from liveness.access import create_client
from liveness.db import session_scope
from liveness.review.service import DEATH_REVIEW_RULE
from liveness.scoring.grade import LEVELS, RULES
from liveness.views.overdue import CAUSES
from liveness.views.worker_queue import address_order, worker_queue
from models import (
    Assessment,
    Level,
    Person,
    ReviewTask,
    Role,
    Run,
    RunStatus,
    TaskStatus,
    WebSessionRecord,
    utcnow,
)
from tests.api.conftest import World
from tests.web.browsing import PHONE, check_page, signed_in_page
from tests.web.conftest import csrf_of, fresh, on_task, sign_in, worker
from tests.web.test_queue_pages import actions_of, listed, task_row

TODAY = dt.date(2026, 1, 1)
NOTE = "老人在女儿家，下周回来；邻居王阿姨可联系 <b>&"


def end_all_sessions(world: World) -> None:
    """Forget every web session on the server, as an expiry or a wiped table would."""
    with session_scope(world.services.sessions) as session:
        session.execute(delete(WebSessionRecord))


def typed(task: int, csrf: str) -> dict[str, str]:
    """Return an outcome form as a worker filled it in (moved away, with its region)."""
    return {
        "csrf_token": csrf, "outcome": "moved_away", "on": "", "region": "330701",
        "note": NOTE, "password": "never kept", "token": "never kept",
    }  # fmt: skip


def form_values(page: str) -> dict[str, str]:
    """Return the outcome form's chosen outcome, region and note as the page shows them."""
    chosen = re.search(r'<option value="([a-z_]+)" selected>', page)
    region = re.search(r'id="region"[^>]*value="([^"]*)"', page)
    note = re.search(r'<textarea id="note"[^>]*>([^<]*)</textarea>', page)
    return {
        "outcome": chosen.group(1) if chosen else "",
        "region": html.unescape(region.group(1)) if region else "",
        "note": html.unescape(note.group(1)) if note else "",
    }


def test_an_outcome_typed_after_the_session_ended_comes_back_after_signing_in(
    web_world: World,
) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    end_all_sessions(web_world)

    answer = client.post(f"/web/tasks/{task}/outcome", data=typed(task, csrf))
    assert answer.status_code == 303
    to = urlsplit(answer.headers["location"])
    assert to.path == "/web/sign-in"
    assert parse_qs(to.query) == {"next": [f"/web/tasks/{task}"], "kept": ["1"]}
    assert task_row(web_world, task).status == TaskStatus.OPEN  # nothing recorded
    kept = client.cookies.get("lv_kept")
    assert kept and "never kept" not in kept and csrf not in kept

    signing = client.get(answer.headers["location"])
    assert "您填写的内容已保留" in signing.text
    signed = sign_in(client, web_world.tokens["grid_worker"], next_page=f"/web/tasks/{task}")
    assert signed.headers["location"] == f"/web/tasks/{task}"
    back = client.get(f"/web/tasks/{task}")
    assert back.status_code == 200
    assert form_values(back.text) == {"outcome": "moved_away", "region": "330701", "note": NOTE}
    assert "请核对后再提交" in back.text
    assert task_row(web_world, task).status == TaskStatus.OPEN  # still only a filled-in form
    # Once shown, the kept form is gone: a reload shows the empty form.
    assert "lv_kept" not in client.cookies
    assert form_values(client.get(f"/web/tasks/{task}").text)["note"] == ""

    # Submitting it, with the new session's token, records it as any outcome.
    fresh_csrf = csrf_of(back.text)
    data = {**typed(task, fresh_csrf), "csrf_token": fresh_csrf}
    assert client.post(f"/web/tasks/{task}/outcome", data=data).status_code == 303
    recorded = task_row(web_world, task)
    assert (recorded.outcome, recorded.outcome_detail["note"]) == ("moved_away", NOTE)


def test_a_kept_form_is_rechecked_and_its_errors_shown(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    end_all_sessions(web_world)
    data = {**typed(task, csrf), "region": "33"}  # too short: the form would refuse it
    client.post(f"/web/tasks/{task}/outcome", data=data)
    sign_in(client, web_world.tokens["grid_worker"])
    back = client.get(f"/web/tasks/{task}").text
    assert form_values(back)["region"] == "33"
    assert 'id="region-error"' in back and 'href="#region"' in back
    assert task_row(web_world, task).status == TaskStatus.OPEN


def test_a_kept_form_returns_only_to_its_author_within_their_grids(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    end_all_sessions(web_world)
    client.post(f"/web/tasks/{task}/outcome", data=typed(task, csrf))
    kept = client.cookies.get("lv_kept")
    assert kept
    with session_scope(web_world.services.sessions) as session:
        colleague = create_client(session, name="wang", role=Role.GRID_WORKER, grids=["G1"])
        stranger = create_client(session, name="li", role=Role.GRID_WORKER, grids=["G2"])
    # Someone else signing in on the same phone does not see what the first worker typed.
    other = fresh(web_world)
    other.cookies.set("lv_kept", kept, path="/web")
    sign_in(other, colleague.token)
    assert NOTE not in html.unescape(other.get(f"/web/tasks/{task}").text)
    # Nor does a form come back where its reader may not go: the task is absent for them.
    outside = fresh(web_world)
    sign_in(outside, stranger.token)
    outside.cookies.set("lv_kept", kept, path="/web")
    answer = outside.get(f"/web/tasks/{task}")
    assert answer.status_code == 404 and NOTE not in html.unescape(answer.text)


def test_nothing_is_kept_from_another_site_or_with_a_wrong_token(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    end_all_sessions(web_world)
    cross = client.post(
        f"/web/tasks/{task}/outcome", data=typed(task, csrf),
        headers={"Sec-Fetch-Site": "cross-site"},
    )  # fmt: skip
    assert cross.status_code == 303 and "kept=1" not in cross.headers["location"]
    assert "lv_kept" not in client.cookies
    client = worker(web_world)
    client.get(f"/web/tasks/{task}")
    end_all_sessions(web_world)
    wrong = client.post(f"/web/tasks/{task}/outcome", data=typed(task, "not-the-token"))
    assert wrong.status_code == 303 and "kept=1" not in wrong.headers["location"]
    assert "lv_kept" not in client.cookies


def test_a_claim_posted_after_the_session_ended_returns_to_its_task(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    end_all_sessions(web_world)
    answer = client.post(f"/web/tasks/{task}/claim", data={"csrf_token": csrf})
    assert answer.headers["location"] == f"/web/sign-in?next=/web/tasks/{task}"
    assert task_row(web_world, task).claimed_by is None


def test_errors_are_summarised_at_the_form_which_the_answer_opens_at(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client = worker(web_world)
    page = client.get(f"/web/tasks/{task}").text
    assert f'action="/web/tasks/{task}/outcome#outcome-form"' in page
    assert 'id="outcome-form"' in page and "autofocus" not in page.split('id="outcome-form"')[1]
    csrf = csrf_of(page)
    data = {"csrf_token": csrf, "outcome": "moved_away", "note": "x" * 501}
    answer = client.post(f"/web/tasks/{task}/outcome", data=data)
    assert answer.status_code == 422
    summary = answer.text.split('id="outcome-errors"')[1].split("</div>")[0]
    # Each field in error is linked from the summary, in the form's order.
    assert re.findall(r'href="#(\w+)"', summary) == ["region", "note"]
    # The first field in error takes the focus; no other does.
    focused = re.findall(r'id="(\w+)"[^>]*autofocus', answer.text)
    assert focused == ["region"]


def test_switching_language_keeps_the_query_and_the_typed_form(web_world: World) -> None:
    client = worker(web_world)
    queue = client.get("/web/queue?kind=home_visit&sort=due&q=%E5%BC%A0").text
    switch = re.search(r'<a href="([^"]+)" hreflang="en"', queue)
    assert switch
    target = urlsplit(html.unescape(switch.group(1)))
    assert parse_qs(target.query) == {
        "kind": ["home_visit"], "sort": ["due"], "q": ["张"], "lang": ["en"],
    }  # fmt: skip

    task = web_world.tasks["visit_g1_high"]
    page = client.get(f"/web/tasks/{task}").text
    assert f'formaction="/web/tasks/{task}/draft?lang=en#outcome-form"' in page
    data = {**typed(task, csrf_of(page)), "region": "3307"}
    english = client.post(f"/web/tasks/{task}/draft?lang=en", data=data)
    assert english.status_code == 200 and 'lang="en"' in english.text
    assert "Record the outcome" in english.text or "Outcome" in english.text
    assert form_values(english.text) == {"outcome": "moved_away", "region": "3307", "note": NOTE}
    assert 'id="outcome-errors"' not in english.text  # checked only when submitted
    assert task_row(web_world, task).status == TaskStatus.OPEN
    assert "lv_lang=en" in english.headers["set-cookie"]
    # The page's own switch link from there goes to the task page itself, not the form's post.
    assert f'<a href="/web/tasks/{task}?lang=zh"' in english.text
    assert ("persons.read", "P3") in actions_of(web_world, "grid_worker")


def test_an_ended_session_does_not_open_a_closed_task_form(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    end_all_sessions(web_world)
    client.post(f"/web/tasks/{task}/outcome", data=typed(task, csrf))
    with session_scope(web_world.services.sessions) as session:
        session.execute(
            update(ReviewTask).where(ReviewTask.id == task).values(status=TaskStatus.CANCELLED)
        )
    sign_in(client, web_world.tokens["grid_worker"])
    page = client.get(f"/web/tasks/{task}")
    assert page.status_code == 200 and NOTE not in html.unescape(page.text)


def test_in_a_browser_an_outcome_typed_as_the_session_ends_is_back_after_sign_in(
    web_world: World, server: str, browser: Any
) -> None:
    phone, page = signed_in_page(browser, server, web_world.tokens["grid_worker"], viewport=PHONE)
    task = web_world.tasks["visit_g1_high"]
    page.goto(f"{server}/web/tasks/{task}")
    page.select_option("#outcome", "moved_away")
    page.fill("#region", "330701")
    page.fill("#note", NOTE)
    check_page(page, "forms-01-typed")

    end_all_sessions(web_world)  # the session expires while the worker types
    with page.expect_navigation():
        page.click("button[type=submit] >> text=提交结果")
    assert "/web/sign-in" in page.url and "kept=1" in page.url
    assert page.locator("[role=alert]").inner_text().startswith("登录已过期")
    check_page(page, "forms-02-sign-in-kept")

    page.fill("#token", web_world.tokens["grid_worker"])
    with page.expect_navigation():
        page.click("button[type=submit] >> text=用令牌登录")
    assert page.url.endswith(f"/web/tasks/{task}")
    assert page.input_value("#outcome") == "moved_away"
    assert page.input_value("#region") == "330701"
    assert page.input_value("#note") == NOTE
    assert page.locator("[role=status]").inner_text().startswith("您之前填写的内容已保留")
    assert task_row(web_world, task).status == TaskStatus.OPEN
    check_page(page, "forms-03-back-filled-in")

    # A mistake now: the answer opens at the form, its error summary in view (a browser
    # follows the fragment rather than autofocus), each error a link to its field.
    page.fill("#region", "33")
    with page.expect_navigation():
        page.click("button[type=submit] >> text=提交结果")
    assert page.url.endswith("#outcome-form")
    assert page.evaluate("window.scrollY") > 0
    top = page.evaluate("document.getElementById('outcome-errors').getBoundingClientRect().top")
    assert 0 <= top < PHONE["height"]
    check_page(page, "forms-04-errors-in-view")

    # English, keeping what is typed; then submitted, recorded.
    page.fill("#region", "330702")
    with page.expect_navigation():
        page.click("button[formaction]")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.input_value("#region") == "330702" and page.input_value("#note") == NOTE
    check_page(page, "forms-05-english-kept")
    with page.expect_navigation():
        page.click("button[type=submit]:not([formaction]) >> text=Record outcome")
    assert "/web/queue?recorded=" in page.url
    assert task_row(web_world, task).outcome_detail["region"] == "330702"
    # The face verification left in the queue offers what a worker can do there.
    with page.expect_navigation():
        page.click(f'[data-task="{web_world.tasks["face_g1"]}"] a.card-link')
    assert page.locator("#outcome option").count() == 4
    check_page(page, "forms-06-face-task")
    phone.close()


def test_the_queue_sorts_by_address_in_walking_order_numbers_as_numbers(
    web_world: World,
) -> None:
    tasks = web_world.tasks
    # As text, "10" sorts before "2" and "1201" before "301": a walk would zigzag.
    addresses = {"P2": "G1·10号楼101室", "P3": "G1·2号楼301室", "P6": "G1·2号楼1201室"}
    with session_scope(web_world.services.sessions) as session:
        for ref, address in addresses.items():
            session.execute(update(Person).where(Person.person_ref == ref).values(address=address))
    walk = [tasks["visit_g1_high"], tasks["face_g1"], tasks["visit_g1_low"]]
    client = worker(web_world)
    assert listed(client.get("/web/queue?sort=address").text) == walk
    with session_scope(web_world.services.sessions) as session:
        pages = [
            worker_queue(session, grids=["G1"], now=utcnow(), today=TODAY, sort="address",
                         limit=2, offset=offset)
            for offset in (0, 2, 4)
        ]  # fmt: skip
    assert [[row.id for row in rows] for rows, _ in pages] == [walk[:2], walk[2:], []]
    assert {total for _, total in pages} == {3}


def test_address_order_compares_text_as_text_and_numbers_as_numbers() -> None:
    written = ["B街9号", "A街10号2室", None, "A街10号10室", "A街2号", " ", "A街10号"]
    assert sorted(written, key=address_order) == [
        "A街2号", "A街10号", "A街10号2室", "A街10号10室", "B街9号", None, " ",
    ]  # fmt: skip


def test_every_reason_the_engine_writes_has_words_in_both_languages() -> None:
    # The codes, read from the engine itself: the grading rules and levels, the causes a
    # review opens for (review.service), a death review's rule.
    service = Path(review_service.__file__).read_text()
    choices, default = re.findall(
        r'\[("[a-z_]+"(?:, "[a-z_]+")*)\],\s*default="([a-z_]+)"', service
    )[0]
    causes = {*re.findall(r'"([a-z_]+)"', choices), default}
    causes |= set(re.findall(r'"cause": "([a-z_]+)"', service))
    assert {"renewal", "visit_asked", "death_record"} <= causes
    assert causes <= set(CAUSES), causes
    codes = [*(f"rule:{r}" for r in RULES), *(f"level:{lv}" for lv in LEVELS),
             *(f"cause:{c}" for c in causes), f"rule:{DEATH_REVIEW_RULE}"]  # fmt: skip
    messages = catalogue()
    for code in codes:
        entry = messages.get(REASON_MESSAGES[code])
        assert entry and entry["zh"] and entry["en"] and entry["zh"] != entry["en"], code
    for lang in ("zh", "en"):
        for rule in RULES:
            text = plain_reasons({"rule": rule}, lang)
            assert text and rule not in text
        assert plain_reasons({"strange": "x"}, lang) == translate(lang, "reason_unknown")


def test_reasons_are_in_words_and_current_as_of_the_latest_run(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]  # P3's, opened with reasons {"rule": "weak"}
    with session_scope(web_world.services.sessions) as session:
        person_id = session.scalar(select(Person.id).where(Person.person_ref == "P3"))
        later = Run(as_of=dt.date(2025, 7, 1), status=RunStatus.PUBLISHED, policy_version="t")
        session.add(later)
        session.flush()
        session.add(Assessment(
            run_id=later.id, person_id=person_id, level=Level.WEAK, score=0.1,
            rule="no_evidence", policy_version="t",
            reasons={"level": "weak", "rule": "no_evidence", "window": 30, "long": 180,
                     "score": 0.1, "sources": {}},
        ))  # fmt: skip
        session.execute(
            update(ReviewTask).where(ReviewTask.id == task)
            .values(cause="renewal", due_on=dt.date(2020, 1, 1))
        )  # fmt: skip
    client = worker(web_world)
    days = (dt.datetime.now(ZoneInfo(web_world.services.settings.timezone)).date()
            - dt.date(2020, 1, 1)).days  # fmt: skip
    for lang, words in (
        ("zh", ["认证到期", "弱：近180天无足够活动痕迹", f"已逾期 {days} 天"]),
        ("en", ["certification due", "weak: not enough evidence of life in the last 180 days",
                f"{days} days overdue"]),
    ):  # fmt: skip
        page = html.unescape(client.get(f"/web/tasks/{task}?lang={lang}").text)
        listed_reasons = re.findall(r"<li>([^<]+)</li>", page.split('class="reasons"')[1])
        assert listed_reasons == words
        assert "rule" not in page.split('class="reasons"')[1].split("</ul>")[0]
        card = html.unescape(client.get(f"/web/queue?lang={lang}").text)
        card = card.split(f'data-task="{task}"')[1].split("</li>")[0]
        assert " · ".join(words) in card


def test_a_face_task_offers_an_assisted_verification_or_a_visit(web_world: World) -> None:
    task = web_world.tasks["face_g1"]
    client = worker(web_world)
    page = html.unescape(client.get(f"/web/tasks/{task}").text)
    offered = re.findall(r'<option value="([a-z_]+)"[^>]*>([^<]+)</option>', page)
    assert offered == [
        ("face_passed", "已协助完成人脸认证：通过"),
        ("face_failed", "已协助完成人脸认证：未通过"),
        ("visit_needed", "无法远程认证，改为上门核查"),
    ]
    # The seeded assessment's reasons name no rule: its level is said, never a key.
    assert "认证等级：" in page and "why" not in page.split('class="reasons"')[1].split("</ul>")[0]
    # A face verification asks for no date of death and no new region.
    assert 'id="died_on"' not in page and 'id="region"' not in page
    csrf = csrf_of(page)
    refused = client.post(
        f"/web/tasks/{task}/outcome", data={"csrf_token": csrf, "outcome": "alive_confirmed"}
    )
    assert refused.status_code == 422 and task_row(web_world, task).status == TaskStatus.OPEN
    done = client.post(
        f"/web/tasks/{task}/outcome", data={"csrf_token": csrf, "outcome": "visit_needed"}
    )
    assert done.status_code == 303
    recorded = task_row(web_world, task)
    assert (recorded.status, recorded.outcome) == (TaskStatus.DONE, "visit_needed")
    assert recorded.outcome_detail["by"] == "grid_worker"
    # A home visit's form keeps its own outcomes.
    visit = html.unescape(client.get(f"/web/tasks/{web_world.tasks['visit_g1_high']}").text)
    assert "visit_needed" not in visit and 'value="moved_away"' in visit


def test_an_unreadable_form_after_the_session_ended_still_goes_to_sign_in(
    web_world: World,
) -> None:
    task = web_world.tasks["visit_g1_high"]
    client = worker(web_world)
    end_all_sessions(web_world)
    answer = client.post(
        f"/web/tasks/{task}/outcome", content=b"--x\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )  # fmt: skip
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/web/sign-in?next=/web/tasks/{task}"
