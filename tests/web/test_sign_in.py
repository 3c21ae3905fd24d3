"""People sign in to the pages with a user name and password, then a one-time code if given one."""

from __future__ import annotations

import datetime as dt

import httpx
import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from liveness.access.passwords import enable_code, set_password
from liveness.db import session_scope
from models import AuditEntry, utcnow
from tests.api.conftest import World
from tests.web.conftest import csrf_of

PASSWORD = "walk the grid 7"


class Clock:
    """A clock the test moves instead of sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


def _browser(world: World) -> tuple[TestClient, Clock]:
    clock = Clock()
    world.client.app.state.clock = clock  # type: ignore[attr-defined]
    return TestClient(world.client.app, follow_redirects=False), clock


def _give_password(world: World, name: str = "grid_worker", *, code: bool = False) -> str | None:
    with session_scope(world.services.sessions) as session:
        set_password(
            session, name=name, password=PASSWORD, policy=world.services.sign_in_policy,
            now=utcnow(),
        )  # fmt: skip
        return enable_code(session, name=name)[1] if code else None


def _password(
    client: TestClient, name: str, password: str, *, lang: str | None = None,
    next_page: str | None = None,
) -> httpx.Response:  # fmt: skip
    form = client.get("/web/sign-in" + (f"?lang={lang}" if lang else ""))
    assert form.status_code == 200
    data = {"csrf_token": csrf_of(form.text), "name": name, "password": password}
    if next_page:
        data["next"] = next_page
    return client.post("/web/sign-in/password", data=data)


def _audit(world: World, action: str) -> list[AuditEntry]:
    with session_scope(world.services.sessions) as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
        return list(session.scalars(query))


def test_the_sign_in_page_asks_a_person_for_name_and_password_in_both_languages(
    web_world: World,
) -> None:
    client, _ = _browser(web_world)
    zh = client.get("/web/sign-in")
    assert "用户名" in zh.text and "密码" in zh.text and 'action="/web/sign-in/password"' in zh.text
    assert 'autocomplete="username"' in zh.text and 'autocomplete="current-password"' in zh.text
    # The token stays, for system accounts.
    assert 'id="token"' in zh.text and 'action="/web/sign-in"' in zh.text
    en = client.get("/web/sign-in?lang=en")
    assert "User name" in en.text and "Password" in en.text and "System accounts" in en.text


def test_a_person_signs_in_with_the_password_to_the_same_session(web_world: World) -> None:
    _give_password(web_world)
    client, _ = _browser(web_world)
    answer = _password(client, "grid_worker", PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/web/queue"
    cookie = answer.headers["set-cookie"]
    assert "lv_session=" in cookie and "HttpOnly" in cookie and PASSWORD not in cookie
    assert client.get("/web/queue").status_code == 200
    assert [e.detail for e in _audit(web_world, "web.sign_in")] == [{"via": "password"}]
    # Back to where the sign-in was asked for, on our pages only.
    task = f"/web/tasks/{web_world.tasks['visit_g1_high']}"
    fresh, _ = _browser(web_world)
    assert _password(fresh, "grid_worker", PASSWORD, next_page=task).headers["location"] == task


def test_a_wrong_password_is_refused_beside_the_field_and_audited_as_refused(
    web_world: World,
) -> None:
    _give_password(web_world)
    client, _ = _browser(web_world)
    answer = _password(client, "grid_worker", "not my password")
    assert answer.status_code == 401
    assert 'id="password-error"' in answer.text and "用户名或密码不正确" in answer.text
    assert 'value="grid_worker"' in answer.text  # the name typed is kept, the password not
    assert "not my password" not in answer.text
    assert client.get("/web/queue").status_code == 303  # still signed out
    refused = _audit(web_world, "web.sign_in.refused")
    assert [(e.actor, e.detail["reason"]) for e in refused] == [("grid_worker", "wrong_password")]
    assert _audit(web_world, "web.sign_in") == []
    # An unknown name gets the very same answer.
    unknown = _password(client, "nobody", "not my password", lang="en")
    assert unknown.status_code == 401 and "The user name or password is wrong" in unknown.text
    # Empty fields are named where they are.
    empty = _password(client, "", "")
    assert empty.status_code == 422
    assert 'id="name-error"' in empty.text and 'id="password-error"' in empty.text


def test_repeated_failures_lock_out_until_the_period_ends(web_world: World) -> None:
    _give_password(web_world)
    policy = web_world.services.sign_in_policy
    client, clock = _browser(web_world)
    for _ in range(policy.max_failures):
        assert _password(client, "grid_worker", "a guess").status_code == 401
    locked = _password(client, "grid_worker", PASSWORD)
    # Locked: the right password answers like a wrong one, and the answer states the rule.
    assert locked.status_code == 401
    assert f"连续输错 {policy.max_failures} 次" in locked.text
    assert f"锁定 {policy.lock_minutes} 分钟" in locked.text
    reasons = [e.detail["reason"] for e in _audit(web_world, "web.sign_in.refused")]
    assert reasons == ["wrong_password"] * policy.max_failures + ["locked"]
    clock.now += dt.timedelta(minutes=policy.lock_minutes, seconds=1)
    assert _password(client, "grid_worker", PASSWORD).status_code == 303


def test_a_one_time_code_is_asked_after_the_password_when_enabled(web_world: World) -> None:
    secret = _give_password(web_world, "operator", code=True)
    assert secret is not None
    client, clock = _browser(web_world)
    answer = _password(client, "operator", PASSWORD, next_page="/web/runs")
    assert (
        answer.status_code == 303
        and answer.headers["location"] == "/web/sign-in/code?next=/web/runs"
    )
    # Not signed in yet: the password alone opens no page (and leaving ends the half-session).
    peek = TestClient(client.app, follow_redirects=False, cookies=client.cookies)
    assert peek.get("/web/dashboard").status_code == 303
    form = client.get(answer.headers["location"])
    assert form.status_code == 200 and 'autocomplete="one-time-code"' in form.text
    assert "验证器" in form.text
    wrong = client.post(
        "/web/sign-in/code",
        data={"csrf_token": csrf_of(form.text), "code": "12345x", "next": "/web/runs"},
    )
    assert wrong.status_code == 401 and 'id="code-error"' in wrong.text
    code = pyotp.TOTP(secret).at(clock.now)
    done = client.post(
        "/web/sign-in/code",
        data={"csrf_token": csrf_of(form.text), "code": code, "next": "/web/runs"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/web/runs"
    assert client.get("/web/dashboard").status_code == 200
    assert [e.detail for e in _audit(web_world, "web.sign_in")] == [{"via": "password+code"}]
    refused = _audit(web_world, "web.sign_in.refused")
    assert [(e.detail["via"], e.detail["reason"]) for e in refused] == [("code", "wrong_code")]


def test_the_code_must_come_within_its_minutes(web_world: World) -> None:
    secret = _give_password(web_world, "operator", code=True)
    assert secret is not None
    policy = web_world.services.sign_in_policy
    client, clock = _browser(web_world)
    answer = _password(client, "operator", PASSWORD, lang="en")
    form = client.get(answer.headers["location"])
    clock.now += dt.timedelta(minutes=policy.code_minutes, seconds=1)
    late = client.post(
        "/web/sign-in/code",
        data={"csrf_token": csrf_of(form.text), "code": pyotp.TOTP(secret).at(clock.now)},
    )
    assert late.status_code == 401 and "The time to type the code has run out" in late.text
    assert client.get("/web/dashboard").status_code == 303
    assert client.get("/web/sign-in/code").status_code == 303


def test_wrong_codes_lock_out_and_say_until_when(web_world: World) -> None:
    _give_password(web_world, "operator", code=True)
    policy = web_world.services.sign_in_policy
    client, _ = _browser(web_world)
    form = client.get(_password(client, "operator", PASSWORD).headers["location"])
    for attempt in range(policy.max_failures):
        answer = client.post(
            "/web/sign-in/code", data={"csrf_token": csrf_of(form.text), "code": "abcdef"}
        )
        assert answer.status_code == 401
        if attempt < policy.max_failures - 1:
            assert 'id="code-error"' in answer.text
    # The password was right, so the lock is stated plainly, with when to try again.
    assert "账户已锁定" in answer.text and 'action="/web/sign-in/password"' in answer.text
    assert _password(client, "operator", PASSWORD).status_code == 401


def test_a_refused_token_is_audited_as_refused(web_world: World) -> None:
    client, _ = _browser(web_world)
    form = client.get("/web/sign-in")
    answer = client.post("/web/sign-in", data={"csrf_token": csrf_of(form.text), "token": "lv_x"})
    assert answer.status_code == 401 and 'id="token-error"' in answer.text
    # A gateway's token is right, but it has no pages: refused, and recorded as refused.
    gateway = client.post(
        "/web/sign-in",
        data={"csrf_token": csrf_of(form.text), "token": web_world.tokens["payment"]},
    )
    assert gateway.status_code == 401 and "没有网页功能" in gateway.text
    refused = _audit(web_world, "web.sign_in.refused")
    assert [(e.actor, e.detail["via"]) for e in refused] == [
        ("anonymous", "token"),
        ("payment", "token"),
    ]
    assert refused[1].detail["reason"] == "no_pages"
    assert _audit(web_world, "web.sign_in") == []


def test_a_password_of_a_role_without_pages_is_refused_plainly(web_world: World) -> None:
    _give_password(web_world, "payment")
    client, _ = _browser(web_world)
    answer = _password(client, "payment", PASSWORD)
    assert answer.status_code == 401 and "没有网页功能" in answer.text
    assert [e.detail["reason"] for e in _audit(web_world, "web.sign_in.refused")] == ["no_pages"]
