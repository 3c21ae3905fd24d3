"""The web pages over HTTP: sign-in, sessions, CSRF, scoping, the outcome form, languages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from sqlalchemy import select

from api.web.i18n import catalogue
from liveness.access import revoke_client
from liveness.db import session_scope
from liveness.ingest.traces import TRACE_SOURCES
from liveness.views.overdue import CAUSES
from liveness.views.payments import STANDINGS
from models import (
    AuditEntry,
    BenefitStatus,
    BenefitType,
    Level,
    ListAction,
    ListEntryStatus,
    ListReason,
    PaymentEvent,
    ReviewTask,
    TaskKind,
    TaskStatus,
    VisitOutcome,
)
from tests.api.conftest import World
from tests.web.conftest import csrf_of, fresh, on_task, sign_in

TEMPLATES = Path(__file__).parents[2] / "api" / "web" / "templates"


def test_grid_worker_signs_in_to_their_queue_with_a_strict_session_cookie(web_world: World) -> None:
    client = fresh(web_world)
    answer = sign_in(client, web_world.tokens["grid_worker"])
    assert answer.status_code == 303
    assert answer.headers["location"] == "/web/queue"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/web" in cookie
    # The cookie names the client, never its token.
    assert web_world.tokens["grid_worker"] not in cookie
    page = client.get("/web/queue")
    assert page.status_code == 200
    assert 'lang="zh-CN"' in page.text and "我的复核任务" in page.text


def test_pages_without_a_session_send_the_browser_to_sign_in_and_back(web_world: World) -> None:
    client = fresh(web_world)
    answer = client.get(f"/web/tasks/{web_world.tasks['visit_g1_high']}")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/web/sign-in?next=/web/tasks/")
    signed = sign_in(
        client, web_world.tokens["grid_worker"],
        next_page=f"/web/tasks/{web_world.tasks['visit_g1_high']}",
    )  # fmt: skip
    assert signed.headers["location"] == f"/web/tasks/{web_world.tasks['visit_g1_high']}"
    # No open redirect: a target off our pages is ignored.
    for target in ("//evil.example/", "https://evil/"):
        bad = sign_in(fresh(web_world), web_world.tokens["grid_worker"], next_page=target)
        assert bad.headers["location"] == "/web/queue"
    bad = sign_in(fresh(web_world), web_world.tokens["grid_worker"], next_page="https://evil/")
    assert bad.headers["location"] == "/web/queue"


def test_a_wrong_token_is_refused_beside_the_field(web_world: World) -> None:
    client = fresh(web_world)
    answer = sign_in(client, "lv_not-a-token")
    assert answer.status_code == 401
    assert 'id="token-error"' in answer.text and "令牌无效" in answer.text
    assert client.get("/web/dashboard").status_code == 303  # still signed out


def test_clients_without_pages_cannot_sign_in(web_world: World) -> None:
    for role in ("payment", "verifier", "notifier"):
        answer = sign_in(fresh(web_world), web_world.tokens[role])
        assert answer.status_code == 401, role
        assert "没有网页功能" in answer.text


def test_forms_without_the_session_csrf_token_are_refused(web_world: World) -> None:
    client = fresh(web_world)
    form = client.get("/web/sign-in")
    refused = client.post(
        "/web/sign-in", data={"csrf_token": "forged", "token": web_world.tokens["operator"]}
    )
    assert refused.status_code == 403
    assert "lv_session" not in refused.headers.get("set-cookie", "")
    sign_in(client, web_world.tokens["grid_worker"])
    task = web_world.tasks["visit_g1_low"]
    answer = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf_of(form.text), "outcome": "alive_confirmed"},
    )  # the anonymous session's token: renewed at sign-in, so worthless now
    assert answer.status_code == 403
    assert _status(web_world, task) == TaskStatus.OPEN


def _status(world: World, task_id: int) -> str:
    with session_scope(world.services.sessions) as session:
        task = session.get(ReviewTask, task_id)
        assert task is not None
        return str(task.status)


def test_the_queue_lists_only_the_workers_grids_by_priority_with_masked_numbers(
    web_world: World,
) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["grid_worker"])
    page = client.get("/web/queue").text
    order = [int(x) for x in re.findall(r'data-task="(\d+)"', page)]
    tasks = web_world.tasks
    assert order == [tasks["visit_g1_high"], tasks["visit_g1_low"], tasks["face_g1"]]
    assert tasks["visit_g2"] not in order and tasks["death_g2"] not in order
    for number in web_world.id_numbers.values():
        assert number not in page
    assert web_world.id_numbers["P3"][:6] + "********" in page
    # Another grid, asked for by name, is refused.
    assert client.get("/web/queue?grid=G2").status_code == 403


def test_a_grid_worker_cannot_open_another_grids_task(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["grid_worker"])
    task = web_world.tasks["visit_g2"]
    answer = client.get(f"/web/tasks/{task}")
    # Answered as if there were no such task: the worker cannot tell another grid's from none.
    absent = client.get("/web/tasks/999999")
    assert answer.status_code == absent.status_code == 404
    assert answer.text.replace(f"/web/tasks/{task}", "ID") == absent.text.replace(
        "/web/tasks/999999", "ID"
    )
    assert "找不到" in answer.text and "Traceback" not in answer.text
    assert client.get("/web/tasks/not-a-number").status_code == 404
    # An id past what the database holds (32 bits; SQLite's own integers end at 64) answers
    # as an absent one does (a run is not the worker's to read at all), never a server error.
    for page in ("tasks", "runs", "orders"):
        absent_status = client.get(f"/web/{page}/999999").status_code
        for too_large in (2**31, 10**20):
            answer = client.get(f"/web/{page}/{too_large}")
            assert answer.status_code == absent_status in (403, 404), (page, too_large)
    posted = client.post(
        f"/web/tasks/{web_world.tasks['visit_g2']}/outcome",
        data={"csrf_token": csrf_of(client.get("/web/queue").text), "outcome": "deceased",
              "died_on": "2025-05-01"},
    )  # fmt: skip
    assert posted.status_code == 404
    assert _status(web_world, web_world.tasks["visit_g2"]) == TaskStatus.OPEN


def test_an_invalid_outcome_shows_its_errors_beside_the_fields_and_records_nothing(
    web_world: World,
) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    # A deceased asks for its date of death on the confirmation step, and refuses it missing.
    answer = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "deceased", "confirm": "yes"},
    )
    assert answer.status_code == 422
    assert 'id="died_on-error"' in answer.text and 'aria-invalid="true"' in answer.text
    # A date of death before the person's birth is refused at the first step, in words.
    unborn = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "deceased", "died_on": "1800-01-01"},
    )
    assert unborn.status_code == 422 and 'id="died_on-error"' in unborn.text
    assert "死亡日期不能早于出生日期" in unborn.text
    # A visit dated before its task was opened is a mistyped year, refused in words.
    early = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "alive_confirmed", "on": "2020-05-30"},
    )
    assert early.status_code == 422 and 'id="on-error"' in early.text
    assert "核查日期不能早于任务下达日期（2025-05-30）" in early.text
    moved = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "moved_away", "region": "33ab"},
    )
    assert moved.status_code == 422 and 'id="region-error"' in moved.text
    assert "6位数字" in moved.text
    # The form keeps what was typed.
    assert 'value="33ab"' in moved.text
    assert _status(web_world, task) == TaskStatus.OPEN


def test_a_recorded_outcome_leaves_the_queue_and_is_audited(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    answer = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "alive_confirmed", "note": "在家"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/web/queue?recorded={task}"
    queue = client.get(answer.headers["location"]).text
    assert f'data-task="{task}"' not in queue
    assert "已记录任务" in queue
    assert _status(web_world, task) == TaskStatus.DONE
    with session_scope(web_world.services.sessions) as session:
        actions = {
            (a.action, a.target_ref, a.detail.get("via"))
            for a in session.scalars(select(AuditEntry).where(AuditEntry.actor == "grid_worker"))
        }
    assert ("tasks.outcome", str(task), "web") in actions
    assert ("persons.read", "P3", "web") in actions
    assert ("tasks.read", "G1", "web") in actions


def test_supervisors_see_the_dashboard_and_grid_workers_do_not(web_world: World) -> None:
    operator = fresh(web_world)
    assert sign_in(operator, web_world.tokens["operator"]).headers["location"] == "/web/dashboard"
    page = operator.get("/web/dashboard")
    assert page.status_code == 200
    assert 'data-figure="on_roll">6<' in page.text
    assert 'data-figure="open_tasks">5<' in page.text
    assert "<svg" in page.text and "暂停发放" in page.text
    assert operator.get(f"/web/runs/{web_world.run_id}").status_code == 200
    assert operator.get("/web/persons/P5").status_code == 200
    assert operator.get("/web/persons/nobody").status_code == 404
    worker = fresh(web_world)
    sign_in(worker, web_world.tokens["grid_worker"])
    assert worker.get("/web/dashboard").status_code == 403
    assert worker.get("/web/persons/P4").status_code == 404  # a person of grid G2: as if absent
    assert worker.get("/web/persons/P1").status_code == 200


def test_revoking_a_client_ends_its_web_session(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    assert client.get("/web/dashboard").status_code == 200
    with session_scope(web_world.services.sessions) as session:
        revoke_client(session, name="operator")
    answer = client.get("/web/dashboard")
    assert answer.status_code == 303 and "/web/sign-in" in answer.headers["location"]


def test_sign_out_ends_the_session(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    page = client.get("/web/dashboard")
    out = client.post("/web/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    assert client.get("/web/dashboard").status_code == 303


def test_a_tampered_session_cookie_is_not_a_session(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    value = client.cookies.get("lv_session")
    assert value
    client.cookies.clear()
    client.cookies.set("lv_session", value[:-3] + "AAA", path="/web")
    assert client.get("/web/dashboard").status_code == 303


def test_english_is_one_switch_away_and_remembered(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    english = client.get("/web/dashboard?lang=en")
    assert 'lang="en"' in english.text and "Certification dashboard" in english.text
    assert "lv_lang=en" in english.headers["set-cookie"]
    assert "Certification dashboard" in client.get("/web/dashboard").text
    assert "认证总览" in client.get("/web/dashboard?lang=zh").text


def test_pages_load_nothing_from_elsewhere(web_world: World) -> None:
    client = fresh(web_world)
    sign_in(client, web_world.tokens["operator"])
    for path in ("/web/dashboard", "/web/runs", f"/web/runs/{web_world.run_id}",
                 "/web/persons/P1", f"/web/tasks/{web_world.tasks['visit_g2']}",
                 "/web/queue?grid=G1"):  # fmt: skip
        page = client.get(path)
        assert page.status_code == 200, path
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        external = re.findall(r'(?:src|href|action)="(?:https?:)?//', page.text)
        assert external == [], path
    assert client.get("/web/static/style.css").status_code == 200


def test_every_text_the_templates_use_exists_in_both_languages() -> None:
    messages = catalogue()
    used: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\('([a-z0-9_]+)'\)", template.read_text()))
    assert used, "no texts found in the templates"
    # Texts named from the domain's values: every value has its words.
    used |= {f"kind_{k}" for k in TaskKind} | {f"outcome_{o}" for o in VisitOutcome}
    used |= {f"action_{a}" for a in ListAction} | {f"level_{lv}" for lv in Level}
    used |= {f"source_{s}" for s in TRACE_SOURCES}
    # The payment history's words (the person page) and the causes of overdue reviews.
    used |= {f"payment_event_{e}" for e in PaymentEvent} | {f"list_reason_{r}" for r in ListReason}
    used |= {f"benefit_status_{s}" for s in BenefitStatus} | {f"benefit_{b}" for b in BenefitType}
    used |= {f"entry_status_{s}" for s in ListEntryStatus} | {f"task_cause_{c}" for c in CAUSES}
    used |= {f"entry_standing_{s}" for s in STANDINGS}
    weights = tomllib.loads((TEMPLATES.parents[2] / "config" / "scoring.toml").read_text())
    used |= {f"trace_kind_{kind}" for kinds in weights["weights"].values() for kind in kinds}
    missing = sorted(key for key in used if key not in messages)
    assert missing == []
    assert all(set(entry) == {"zh", "en"} for entry in messages.values())
