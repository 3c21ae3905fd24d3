"""People's sign-in to the pages: user name and password, then a one-time code if they have one.

The rules (hashing, counting failures, lock-out, codes) are liveness.access.passwords'; here
only the forms and the session. Every attempt's transaction is committed, refused or not: the
count of failures and the refusal's audit entry are what a refusal must leave behind.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.web.i18n import translate
from api.web.pages import (
    COOKIE,
    CSRF_FIELD,
    HOME_BY_ROLE,
    clock,
    enter,
    form_of,
    remote_addr,
    render,
    safe_next,
    set_session,
    sign_in_page,
    signer,
    web_lang,
)
from api.web.session import WebSession
from liveness.access import Attempt, SignInCheck, SignInPolicy, check_code, check_password
from liveness.db import WRITES_AHEAD, session_scope
from liveness.services import Services

router = APIRouter(prefix="/web", include_in_schema=False)


def _refused_text(request: Request, policy: SignInPolicy, key: str = "sign_in_refused") -> str:
    """Return the answer to a refused attempt, stating the lock-out rule."""
    return translate(
        web_lang(request), key, failures=policy.max_failures, minutes=policy.lock_minutes
    )


def _code_url(next_page: str | None) -> str:
    """Return the one-time code form's address, carrying the page to go to after."""
    return "/web/sign-in/code" + ("" if next_page is None else f"?next={quote(next_page)}")


async def _attempt(
    request: Request, check: Callable[..., SignInCheck], *, now: dt.datetime, **given: Any
) -> SignInCheck:
    """Run a sign-in check of what was `given` in a transaction of its own, always committed."""
    services: Services = request.app.state.services

    def run() -> SignInCheck:
        with session_scope(services.sessions) as session:
            # Every attempt writes (a count, an audit entry): SQLite takes the write lock first.
            session.connection(execution_options={WRITES_AHEAD: True})
            return check(
                session, **given, policy=services.sign_in_policy, now=now, roles=HOME_BY_ROLE,
                remote_addr=remote_addr(request),
            )  # fmt: skip

    return await run_in_threadpool(run)


@router.post("/sign-in/password", response_class=HTMLResponse)
async def sign_in_with_password(request: Request) -> Response:
    """Sign a person in with their user name and password (a code may be asked next)."""
    lang = web_lang(request)
    web = signer(request).load(request.cookies.get(COOKIE)) or WebSession.anonymous()
    form = await form_of(request, web)
    name, password = form.get("name", "").strip(), form.get("password", "")
    next_page = safe_next(form.get("next"))
    errors = {}
    if not name:
        errors["name"] = translate(lang, "name_required")
    if not password:
        errors["password"] = translate(lang, "password_required")
    if errors:
        return sign_in_page(
            request, web, status=422, next_page=next_page, errors=errors, typed_name=name
        )
    policy = request.app.state.services.sign_in_policy
    now = clock(request)
    result = await _attempt(request, check_password, now=now, name=name, password=password)
    if result.attempt == Attempt.CODE_REQUIRED and result.client_id is not None:
        response = RedirectResponse(_code_url(next_page), 303)
        pending = WebSession.awaiting_code(result.client_id, at=int(now.timestamp()))
        set_session(request, response, pending)
        return response
    if result.principal is not None:
        return await enter(request, result.principal, next_page)
    if result.reason == "no_pages":  # the password was right: say why plainly
        errors["password"] = translate(lang, "no_web_role")
    else:
        errors["password"] = _refused_text(request, policy)
    return sign_in_page(
        request, web, status=401, next_page=next_page, errors=errors, typed_name=name
    )


def _code_time_left(web: WebSession, *, policy: SignInPolicy, now: dt.datetime) -> bool:
    """Return whether a session awaits a code and its time to type it has not run out."""
    if web.pending_id is None or web.pending_at is None:
        return False
    return 0 <= now.timestamp() - web.pending_at <= policy.code_minutes * 60


def _code_page(
    request: Request, web: WebSession, *, policy: SignInPolicy, next_page: str | None,
    status: int = 200, error: str | None = None,
) -> HTMLResponse:  # fmt: skip
    """Render the one-time code form."""
    return render(
        request, "sign_in_code.html", status=status, principal=None, nav=[], csrf=web.csrf,
        csrf_field=CSRF_FIELD, next=next_page, minutes=policy.code_minutes,
        errors={} if error is None else {"code": error},
    )  # fmt: skip


def _start_again(request: Request, *, next_page: str | None, notice: str) -> Response:
    """Send the person back to the password form with a notice; the half-session ends."""
    web = WebSession.anonymous()
    response = sign_in_page(request, web, status=401, next_page=next_page, notice=notice)
    set_session(request, response, web)
    return response


@router.get("/sign-in/code", response_class=HTMLResponse)
def sign_in_code_form(request: Request, next: str | None = None) -> Response:
    """Ask for the one-time code of a person whose password was just accepted."""
    web = signer(request).load(request.cookies.get(COOKIE))
    policy = request.app.state.services.sign_in_policy
    if web is None or not _code_time_left(web, policy=policy, now=clock(request)):
        return RedirectResponse("/web/sign-in", 303)
    return _code_page(request, web, policy=policy, next_page=safe_next(next))


@router.post("/sign-in/code", response_class=HTMLResponse)
async def sign_in_with_code(request: Request) -> Response:
    """Finish a person's sign-in with their one-time code."""
    lang = web_lang(request)
    web = signer(request).load(request.cookies.get(COOKIE)) or WebSession.anonymous()
    form = await form_of(request, web)
    next_page = safe_next(form.get("next"))
    services: Services = request.app.state.services
    policy = services.sign_in_policy
    now = clock(request)
    if web.pending_id is None or not _code_time_left(web, policy=policy, now=now):
        return _start_again(request, next_page=next_page, notice=translate(lang, "code_expired"))
    client_id, code = web.pending_id, form.get("code", "")
    if not code.strip():
        return _code_page(
            request, web, policy=policy, next_page=next_page, status=422,
            error=translate(lang, "code_required"),
        )  # fmt: skip
    result = await _attempt(request, check_code, now=now, client_id=client_id, code=code)
    if result.principal is not None:
        return await enter(request, result.principal, next_page)
    if result.reason == "no_pages":
        return _start_again(request, next_page=next_page, notice=translate(lang, "no_web_role"))
    if result.locked_until is not None:
        # The password was right: saying that the account is now locked tells a guesser
        # nothing, and tells the person how long to wait.
        until = result.locked_until.astimezone(ZoneInfo(services.settings.timezone))
        notice = translate(lang, "sign_in_locked", until=f"{until:%Y-%m-%d %H:%M}")
        return _start_again(request, next_page=next_page, notice=notice)
    if result.reason in {"wrong_code", "code_reused"}:
        return _code_page(
            request, web, policy=policy, next_page=next_page, status=401,
            error=_refused_text(request, policy, "code_refused"),
        )  # fmt: skip
    return _start_again(request, next_page=next_page, notice=_refused_text(request, policy))
