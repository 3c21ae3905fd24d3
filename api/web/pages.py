"""The web pages: sign-in, a grid worker's queue and tasks, the dashboard, runs and persons.

Pages use the API's clients and roles (PERMISSIONS), its audit, and the same domain
services; only the session differs: a signed cookie instead of a bearer token, with a CSRF
token that every form echoes. Reads of personal data are audited as over the API.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from api.deps import SessionDep, intend
from api.routers.common import Id
from api.web import charts, formats
from api.web.export import csv_href, csv_response, table_href, table_rows, wants_csv
from api.web.i18n import LANGS, Lang, catalogue, label, pick_lang, translate
from api.web.payments import payment_rows
from api.web.reasons import plain_reasons, why_listed
from api.web.session import (
    COOKIE,
    CSRF_FIELD,
    KEPT_COOKIE,
    LANG_COOKIE,
    KeptForm,
    SessionSigner,
    WebSession,
)
from liveness.access import (
    PERMISSIONS,
    Forbidden,
    Principal,
    Unauthenticated,
    authenticate,
    authorize,
    authorize_grid,
    hide_outside_grids,
    record_audit,
)
from liveness.access.sessions import end_web_session, open_web_session, web_session_principal
from liveness.db import session_scope
from liveness.errors import LivenessError, NotFound
from liveness.review.claims import (
    ClaimRefused,
    claim_task,
    ensure_may_settle,
    no_task,
    release_task,
)
from liveness.review.outcomes import (
    OUTCOMES_BY_KIND,
    OutcomeInvalid,
    UndoRefused,
    born_on,
    record_outcome,
    undo_outcome,
)
from liveness.services import Services
from liveness.views.person import no_person, person_view
from liveness.views.queue import task_grid
from liveness.views.schemas import PersonRead
from liveness.views.worker_queue import (
    QUEUE_SORTS,
    age_on,
    recorded_visits,
    worker_queue,
)
from models import (
    LIVE_TASK_STATUSES,
    ApiClient,
    Person,
    ReviewTask,
    Role,
    TaskKind,
    TaskStatus,
    VisitOutcome,
    utcnow,
)

T = TypeVar("T")
HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
TEMPLATES.env.globals["level_colours"] = charts.LEVEL_COLOURS
formats.install(TEMPLATES.env)  # money, local_time, region_label...: api.web.formats

# Pages hold personal data: never cached, never framed, no script but our own (there is none).
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# Which page each role starts on; roles without a page (gateways, payment) cannot sign in.
HOME_BY_ROLE = {
    Role.GRID_WORKER: "/web/queue",
    Role.OPERATOR: "/web/dashboard",
    Role.ADMIN: "/web/dashboard",
    Role.AUDITOR: "/web/dashboard",
    Role.INSPECTOR: "/web/orders",
}
NAV = (
    ("nav_queue", "/web/queue", "tasks.read"),
    ("nav_visits", "/web/visits", "tasks.outcome"),
    ("nav_dashboard", "/web/dashboard", "indicators.read"),
    ("nav_runs", "/web/runs", "runs.read"),
    ("nav_whatif", "/web/whatif", "runs.read"),
    ("nav_approvals", "/web/approvals", "lists.approve"),
    ("nav_orders", "/web/orders", "orders.read"),
    ("nav_suspensions", "/web/suspensions/next", "indicators.read"),
    ("nav_audit", "/web/audit", "audit.read"),
)
LEVELS = ("strong", "medium", "weak", "deceased")
# The columns of the CSV exports of the queue, my visits and the runs (message keys).
QUEUE_CSV = ("person_ref", "name", "id_number", "age", "address", "phone", "region", "grid_code",
             "kind", "priority", "due_on", "claimed_by", "reasons")  # fmt: skip
VISITS_CSV = ("visit_on", "person_ref", "name", "address", "kind", "outcome", "status")
VISITS_SHOWN = 500  # a month of one worker's visits is well under this


def web_lang(request: Request) -> Lang:
    """Return the language of a request: the ?lang= switch, else the cookie, else Chinese."""
    return pick_lang(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def signer(request: Request) -> SessionSigner:
    """Return the app's session signer."""
    found: SessionSigner = request.app.state.web_signer
    return found


def language_switch(request: Request, other: Lang, *, page: str | None = None) -> str:
    """Return the address that shows this page in the other language, keeping its query.

    A page answering a form (a POST) has no address of its own to show again: `page` names
    the page the form belongs to (the form itself keeps its values by its own switch button).
    """
    if request.method == "GET":
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        return request.url.path + "?" + urlencode([*query, ("lang", other)])
    return (page or request.url.path) + "?" + urlencode({"lang": other})


def page_number(page: str | None = Query(None)) -> int:
    """Read ?page= leniently: anything but a small positive number is 1."""
    return max(1, int(page)) if page and page.isdigit() and len(page) < 7 else 1


def page_count(total: int, size: int) -> int:
    """Return how many pages of `size` rows `total` rows fill (at least one)."""
    return max(1, -(-total // size))


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a page in the request's language, with the security headers."""
    lang = web_lang(request)
    other = LANGS[1 - LANGS.index(lang)]
    base = {
        "lang": lang, "other_lang": other, "path": request.url.path,
        "lang_href": language_switch(request, other, page=context.get("switch_page")),
        "t": lambda key, **values: translate(lang, key, **values),
        # A domain value in words (task_status_open -> 待办); an unknown value shows itself.
        "label": lambda value, kind: label(lang, kind, value),
        # The address of one of the page's tables as CSV (see api.web.export).
        "table_csv": lambda table: table_href(request, table),
    }  # fmt: skip
    response = TEMPLATES.TemplateResponse(
        request, template, {**base, **context}, status_code=status, headers=SECURITY_HEADERS
    )
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


class SignInRequired(Exception):
    """The request has no valid session: the browser is sent to the sign-in page."""


# The sentence an error page shows, by status, in the page's language.
ERROR_MESSAGES = {403: "error_403", 404: "error_404", 409: "error_409", 422: "error_422",
                  503: "error_busy"}  # fmt: skip


def sign_in_redirect(request: Request) -> Response:
    """Send the browser to the sign-in page, and back here afterwards (GET only)."""
    target = request.url.path
    if request.method == "GET" and request.url.query:
        target += "?" + request.url.query
    response = RedirectResponse(f"/web/sign-in?next={quote(target)}", 303)
    response.delete_cookie(COOKIE, path="/web")
    return response


@dataclass(frozen=True)
class KeptFormRule:
    """A form whose typed fields outlive an ended session: where it posts and returns.

    `fields` are the form's own fields, each with the longest value kept (never a password or
    a CSRF token); a form of none (a claim, an undo) only returns to its page.
    """

    action: re.Pattern[str]
    page: str  # formatted with the action's groups
    fields: dict[str, int]


# The outcome form's fields and their longest accepted values (the note: see _validate_outcome).
OUTCOME_FIELDS = {"outcome": 32, "on": 10, "died_on": 10, "region": 6, "note": 500}
KEPT_FORMS = (
    KeptFormRule(re.compile(r"/web/tasks/(\d{1,12})/(?:outcome|draft)"), "/web/tasks/{0}",
                 OUTCOME_FIELDS),
    KeptFormRule(re.compile(r"/web/tasks/(\d{1,12})/(?:claim|release|undo)"), "/web/tasks/{0}",
                 {}),
)  # fmt: skip


async def sign_in_again(request: Request) -> Response:
    """Send a browser whose session ended to the sign-in page, keeping what a form held.

    A form posted after its session ended (expired, signed out elsewhere, a restart) is not
    acted on; its own fields are kept in a signed cookie for its page, which shows them
    filled in once the same person has signed in again, to check and submit. Kept only from a
    same-origin post (Sec-Fetch-Site) whose CSRF token matches the ended session's, when that
    session can still be read: another site cannot plant a form's values.
    """
    rule = None
    if request.method == "POST":
        rule = next((r for r in KEPT_FORMS if r.action.fullmatch(request.url.path)), None)
    if rule is None:
        return sign_in_redirect(request)
    match = rule.action.fullmatch(request.url.path)
    assert match is not None
    page = rule.page.format(*match.groups())
    response = RedirectResponse(f"/web/sign-in?next={quote(page)}", 303)
    response.delete_cookie(COOKIE, path="/web")
    if not rule.fields or request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return response
    try:
        form = await request.form()
    except (MultiPartException, ClientDisconnect):
        return response  # nothing readable to keep
    ended = signer(request).load(request.cookies.get(COOKIE))
    if ended is not None and not ended.accepts(form.get(CSRF_FIELD)):
        return response
    fields = {
        name: value[:longest] for name, longest in rule.fields.items()
        if isinstance(value := form.get(name), str) and value.strip()
    }  # fmt: skip
    if not fields:
        return response
    kept = KeptForm(page=page, client_id=None if ended is None else ended.client_id, fields=fields)
    settings = request.app.state.services.settings
    response.headers["location"] += "&kept=1"
    response.set_cookie(
        KEPT_COOKIE, signer(request).dump_kept(kept),
        max_age=settings.web_kept_form_minutes * 60, path="/web", httponly=True,
        samesite="strict", secure=settings.web_cookie_secure,
    )  # fmt: skip
    return response


def kept_form(page: Page, fields: dict[str, int]) -> dict[str, str] | None:
    """Return the fields kept for this page from before its author signed in again, if any.

    Only for the person who typed them (when known), only the page's own `fields`, re-capped.
    """
    settings = page.services.settings
    kept = signer(page.request).load_kept(
        page.request.cookies.get(KEPT_COOKIE), max_age_s=settings.web_kept_form_minutes * 60
    )
    if kept is None or kept.page != page.request.url.path:
        return None
    if kept.client_id is not None and kept.client_id != page.principal.client_id:
        return None
    return {name: kept.fields[name][:n] for name, n in fields.items() if name in kept.fields}


async def error_response(
    request: Request, status: int, detail: str | None, *, message: str | None = None
) -> Response:
    """Answer an error under /web as a page: its language, the navigation, the headers.

    A missing or ended session (401) goes to the sign-in page instead. `detail` is the
    engine's own explanation, shown under the page's sentence for conflicts and bad input;
    `message` replaces the status's general sentence when the page knows better.
    """
    if status == 401:
        return await sign_in_again(request)
    lang = web_lang(request)
    message = message or translate(lang, ERROR_MESSAGES.get(status, "error_500"))
    page: Page | None = getattr(request.state, "web_page", None)
    context: dict[str, Any] = {"principal": None, "nav": []}
    if page is not None:
        context = {"principal": page.principal, "nav": page.nav, "csrf": page.web.csrf,
                   "csrf_field": CSRF_FIELD}  # fmt: skip
    elif request.url.path.startswith("/web/"):
        context = await run_in_threadpool(_visitor, request)
    shown = detail if status in (409, 422) and detail else None
    return render(request, "error.html", status=status, message=message, detail=shown, **context)


def _visitor(request: Request) -> dict[str, Any]:
    """Return who is signed in on a request no page route took (an unknown address), if anyone.

    Best effort: the error page is shown without navigation when the session is not valid.
    """
    services: Services = request.app.state.services
    web = signer(request).load(request.cookies.get(COOKIE))
    if web is None or web.client_id is None or web.key is None:
        return {"principal": None, "nav": []}
    try:
        principal = _principal(services, web, clock(request))
    except (LivenessError, SQLAlchemyError):
        return {"principal": None, "nav": []}
    return {"principal": principal, "nav": nav_of(principal), "csrf": web.csrf,
            "csrf_field": CSRF_FIELD}  # fmt: skip


router = APIRouter(prefix="/web", include_in_schema=False)


def nav_of(principal: Principal) -> list[tuple[str, str]]:
    """Return the navigation a principal's role may follow."""
    return [(key, href) for key, href, needs in NAV if principal.role in PERMISSIONS[needs]]


def _principal(services: Services, web: WebSession, now: dt.datetime) -> Principal:
    """Look up a session and its client in a short transaction of its own (see api.deps._lookup).

    Every request: a session signed out, or a client revoked or expired since signing in, is
    refused at once, whoever holds a copy of the cookie.
    """
    if web.client_id is None or web.key is None:
        raise SignInRequired
    with session_scope(services.sessions) as session:
        return web_session_principal(session, key=web.key, client_id=web.client_id, now=now)


@dataclass
class Page:
    """A signed-in page request: who, in which language, with the request's session."""

    request: Request
    services: Services
    session: Session
    principal: Principal
    web: WebSession
    lang: Lang
    nav: list[tuple[str, str]] = field(default_factory=list)

    def t(self, key: str, **values: object) -> str:
        """Return a message in the page's language."""
        return translate(self.lang, key, **values)

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        """Render a page with the signed-in context (navigation, CSRF token).

        `?format=csv&table=name` answers that table of the page as CSV instead, as shown.
        """
        response = render(
            self.request, template, status=status, principal=self.principal,
            csrf=self.web.csrf, csrf_field=CSRF_FIELD, nav=self.nav, **context,
        )  # fmt: skip
        table = self.request.query_params.get("table", "")[:40]
        if not (wants_csv(self.request) and table) or status != 200:
            return response
        rows = table_rows(bytes(response.body).decode("utf-8"), table)
        if rows is None:
            raise NotFound(f"this page has no table {table!r}")
        self.audit("export.csv", "page", self.request.url.path, {"table": table})
        return csv_response(name=table, day=self.today(), columns=rows[0], rows=rows[1:])

    def audit(
        self, action: str, target_type: str, target_ref: str | int | None,
        detail: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """Audit this request in its transaction (first: see api.deps.Caller.audit)."""
        intend(self.request, self.principal.name, action, target_type, target_ref, via="web")
        record_audit(
            self.session, actor=self.principal.name, action=action, target_type=target_type,
            target_ref=None if target_ref is None else str(target_ref),
            detail={**(detail or {}), "via": "web"},
            remote_addr=None if self.request.client is None else self.request.client.host,
        )  # fmt: skip

    def attempt(
        self, action: str, target_type: str, target_ref: int, act: Callable[[], object],
        refusals: tuple[type[LivenessError], ...], detail: dict[str, Any] | None = None,
    ) -> LivenessError | None:  # fmt: skip
        """Do `act` audited as `action`; return a refusal, rolled back and audited as refused.

        Of a refused change only its audit entries are kept (the request still commits).
        """
        self.audit(action, target_type, target_ref, detail)
        try:
            act()
        except refusals as refusal:
            self.session.rollback()
            self.audit(f"{action}.refused", target_type, target_ref, {"reason": str(refusal)})
            return refusal
        return None

    def today(self) -> dt.date:
        """Return today's date in the agency's time zone."""
        return dt.datetime.now(ZoneInfo(self.services.settings.timezone)).date()

    async def run(self, work: Callable[[], T]) -> T:
        """Run blocking database work in a worker thread (the session dependency commits)."""
        return await run_in_threadpool(work)


def signed_in(permission: str | None = None) -> Callable[..., Coroutine[Any, Any, Page]]:
    """Return a dependency admitting a signed-in client whose role grants `permission`."""

    async def dependency(request: Request, session: SessionDep) -> Page:
        services: Services = request.app.state.services
        web = signer(request).load(request.cookies.get(COOKIE))
        if web is None or web.client_id is None:
            raise SignInRequired
        principal = await run_in_threadpool(_principal, services, web, clock(request))
        page = Page(
            request=request, services=services, session=session, principal=principal, web=web,
            lang=web_lang(request), nav=nav_of(principal),
        )  # fmt: skip
        # An error page shows this navigation; a refusal is audited under this intent.
        request.state.web_page = page
        intend(request, principal.name, permission or "pages.read", "page",
               request.url.path, via="web")  # fmt: skip
        if permission is not None:
            authorize(principal, permission)
        return page

    return dependency


async def form_of(request: Request, web: WebSession) -> dict[str, str]:
    """Read a submitted form's fields, refusing it unless it echoes the session's CSRF token.

    The token is checked here and left out of the fields.
    """
    form = await request.form()
    if not web.accepts(form.get(CSRF_FIELD)):
        raise Forbidden(translate(web_lang(request), "form_expired"))
    return {
        key: value for key, value in form.items() if isinstance(value, str) and key != CSRF_FIELD
    }


def safe_next(target: str | None) -> str | None:
    """Return a redirect target only if it stays on our pages (no open redirect)."""
    if target and target.startswith("/web/") and not target.startswith("//"):
        return target
    return None


# Sign-in and sign-out.


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(
    request: Request, next: str | None = None, kept: str | None = None
) -> HTMLResponse:
    """Show the sign-in form, with a CSRF token bound to a fresh anonymous session."""
    web = signer(request).load(request.cookies.get(COOKIE)) or WebSession.anonymous()
    notice = translate(web_lang(request), "form_kept_sign_in") if kept == "1" else None
    response = sign_in_page(request, web, next_page=safe_next(next), notice=notice)
    set_session(request, response, web)
    return response


def sign_in_page(
    request: Request, web: WebSession, *, status: int = 200, next_page: str | None = None,
    errors: dict[str, str] | None = None, typed_name: str = "", notice: str | None = None,
) -> HTMLResponse:  # fmt: skip
    """Render the sign-in page: a person's name and password, and a machine's token."""
    return render(
        request, "sign_in.html", status=status, principal=None, nav=[], csrf=web.csrf,
        csrf_field=CSRF_FIELD, next=next_page, errors=errors or {}, typed_name=typed_name,
        notice=notice,
    )  # fmt: skip


def clock(request: Request) -> dt.datetime:
    """Return the app's current time (tests set the clock; see api.app)."""
    now: dt.datetime = request.app.state.clock()
    return now


def remote_addr(request: Request) -> str | None:
    """Return the address a request came from, for the audit."""
    return None if request.client is None else request.client.host


async def enter(request: Request, principal: Principal, next_page: str | None) -> Response:
    """Start the session of a client just signed in (its role has pages: HOME_BY_ROLE).

    The server records the session (liveness.access.sessions), so that signing out ends it
    for every copy of the cookie.
    """
    services: Services = request.app.state.services
    now = clock(request)

    def open_session() -> str:
        with session_scope(services.sessions) as session:
            return open_web_session(
                session, client_id=principal.client_id, now=now,
                minutes=services.settings.web_session_minutes,
            )  # fmt: skip

    key = await run_in_threadpool(open_session)
    response = RedirectResponse(next_page or HOME_BY_ROLE[principal.role], 303)
    # A new session (and CSRF token) at sign-in: a token planted before it is worthless.
    set_session(request, response, WebSession.signed_in(principal.client_id, key))
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Sign in with a client's token (machines; people use /web/sign-in/password)."""
    lang = web_lang(request)
    web = signer(request).load(request.cookies.get(COOKIE)) or WebSession.anonymous()
    form = await form_of(request, web)
    token = form.get("token", "").strip()
    next_page = safe_next(form.get("next"))
    services: Services = request.app.state.services
    now = clock(request)

    def check() -> Principal | None:
        with session_scope(services.sessions) as session:
            try:
                principal = authenticate(session, token=token, now=now)
            except Unauthenticated as refusal:
                record_audit(
                    session, actor="anonymous", action="web.sign_in.refused",
                    target_type="client", target_ref=None,
                    detail={"via": "token", "reason": str(refusal)},
                    remote_addr=remote_addr(request),
                )  # fmt: skip
                return None
            if principal.role not in HOME_BY_ROLE:
                record_audit(
                    session, actor=principal.name, action="web.sign_in.refused",
                    target_type="client", target_ref=str(principal.client_id),
                    detail={"via": "token", "reason": "no_pages"},
                    remote_addr=remote_addr(request),
                )  # fmt: skip
                return principal
            record_audit(
                session, actor=principal.name, action="web.sign_in", target_type="client",
                target_ref=str(principal.client_id), detail={"via": "web"},
                remote_addr=remote_addr(request),
            )  # fmt: skip
            return principal

    error = translate(lang, "token_required")
    if token:
        principal = await run_in_threadpool(check)
        if principal is None:
            error = translate(lang, "token_refused")
        elif principal.role not in HOME_BY_ROLE:
            error = translate(lang, "no_web_role")
        else:
            return await enter(request, principal, next_page)
    return sign_in_page(request, web, status=401, next_page=next_page, errors={"token": error})


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session on the server (a copy of the cookie stops working) and clear it."""
    web = signer(request).load(request.cookies.get(COOKIE))
    if web is None:
        return RedirectResponse("/web/sign-in", 303)
    await form_of(request, web)
    services: Services = request.app.state.services
    now = clock(request)

    def end(key: str, client_id: int) -> None:
        with session_scope(services.sessions) as session:
            if not end_web_session(session, key=key, now=now):
                return  # ended already: nothing to record
            actor = session.get(ApiClient, client_id)
            record_audit(
                session, actor="?" if actor is None else actor.name, action="web.sign_out",
                target_type="client", target_ref=str(client_id), detail={"via": "web"},
                remote_addr=None if request.client is None else request.client.host,
            )  # fmt: skip

    if web.key is not None and web.client_id is not None:
        await run_in_threadpool(end, web.key, web.client_id)
    response = RedirectResponse("/web/sign-in", 303)
    response.delete_cookie(COOKIE, path="/web")
    response.delete_cookie(KEPT_COOKIE, path="/web")  # a shared phone keeps nobody's typing
    return response


def set_session(request: Request, response: Response, web: WebSession) -> None:
    """Set the session cookie: HttpOnly, SameSite=Strict, scoped to the pages."""
    settings = request.app.state.services.settings
    response.set_cookie(
        COOKIE, signer(request).dump(web), max_age=settings.web_session_minutes * 60,
        path="/web", httponly=True, samesite="strict", secure=settings.web_cookie_secure,
    )  # fmt: skip


@router.get("/")
def home(page: Page = Depends(signed_in())) -> Response:  # noqa: B008
    """Send a signed-in client to its role's start page."""
    return RedirectResponse(HOME_BY_ROLE.get(page.principal.role, "/web/sign-in"), 303)


# The grid worker's queue, task and outcome.


@dataclass(frozen=True)
class QueueQuery:
    """The queue's filters, sort, search and page, as the URL carries them."""

    grid: str = ""
    kind: str = ""
    overdue: bool = False
    sort: str = "priority"
    q: str = ""
    page: int = 1

    def url(self, **changes: Any) -> str:
        """Return the queue's address with these filters, changed by `changes`."""
        values = {**vars(self), **changes}
        query = {
            key: ("1" if value is True else str(value))
            for key, value in values.items()
            if value not in ("", False, None) and not (key == "page" and value == 1)
            and not (key == "sort" and value == "priority")
        }  # fmt: skip
        return "/web/queue" + ("?" + urlencode(query) if query else "")


def _queue_query(
    grid: str | None, kind: str | None, overdue: str | None, sort: str | None, q: str | None,
    number: int,
) -> QueueQuery:  # fmt: skip
    """Read the queue's query string leniently: an unknown value falls back to the default."""
    return QueueQuery(
        grid=(grid or "").strip()[:32],
        kind=kind if kind in {str(k) for k in TaskKind} else "",
        overdue=overdue in ("1", "on", "true"),
        sort=sort if sort in QUEUE_SORTS else "priority",
        q=(q or "").strip()[:64],
        page=number,
    )


def _claim_state(page: Page, claimed_by: str | None) -> str:
    """Say whose a task is: `mine`, `other` (claimed by someone else) or `free`."""
    if claimed_by is None:
        return "free"
    return "mine" if claimed_by == page.principal.name else "other"


@router.get("/queue", response_class=HTMLResponse)
async def queue(
    page: Page = Depends(signed_in("tasks.read")),  # noqa: B008
    grid: str | None = None,
    kind: str | None = None,
    overdue: str | None = None,
    sort: str | None = None,
    q: str | None = None,
    number: int = Depends(page_number),
    recorded: int | None = None,
    undone: int | None = None,
) -> Response:
    """Show a page of the open tasks of the caller's grids: filtered, sorted, searched."""
    principal = page.principal
    chosen = _queue_query(grid, kind, overdue, sort, q, number)
    export = wants_csv(page.request)  # every matching task, not one page
    worker = principal.role == Role.GRID_WORKER
    size = page.services.settings.web_queue_page_size
    now = utcnow()

    def work() -> tuple[list[dict[str, Any]], int]:
        if chosen.grid:
            authorize_grid(principal, chosen.grid)
        grids = [chosen.grid] if chosen.grid else (list(principal.grids) if worker else None)
        audited: list[str | None] = list(grids) if grids else [None]
        for code in audited:  # a grid worker's reads are audited grid by grid
            page.audit("tasks.read", "grid", code, {
                "status": "open", "kind": chosen.kind or None, "overdue": chosen.overdue,
                "search": bool(chosen.q), "page": chosen.page,
                "format": "csv" if export else "html",
            })  # fmt: skip
        rows, total = worker_queue(
            page.session, grids=grids, now=now, today=page.today(), kind=chosen.kind or None,
            overdue=chosen.overdue, search=chosen.q, sort=chosen.sort,
            limit=None if export else size, offset=0 if export else (chosen.page - 1) * size,
        )  # fmt: skip
        cards = [
            {**vars(row), "kind_label": page.t(f"kind_{row.kind}"),
             "age": age_on(row.birth_date, page.today()), "overdue": row.due_on < page.today(),
             "claim": _claim_state(page, row.claimed_by),
             "claimable": row.kind != TaskKind.FACE_VERIFICATION,
             "reasons_text": " · ".join(why_listed(
                 page.lang, cause=row.cause, task_reasons=row.reasons, current=row.current,
                 due_on=row.due_on, today=page.today()))}
            for row in rows
        ]  # fmt: skip
        return cards, total

    cards, total = await page.run(work)
    if export:
        return csv_response(
            name="queue", day=page.today(),
            columns=[page.t(k) for k in QUEUE_CSV],
            rows=[[c["person_ref"], c["name"], c["id_number_masked"], c["age"], c["address"],
                   c["phone"], c["region_code"], c["grid_code"], c["kind_label"], c["priority"],
                   c["due_on"], c["claimed_by"], c["reasons_text"]] for c in cards],
        )  # fmt: skip
    pages = page_count(total, size)
    return page.render(
        "queue.html", cards=cards, total=total, query=chosen, pages=pages,
        page_no=min(chosen.page, pages), here=chosen.url(page=chosen.page),
        kinds=[(str(k), page.t(f"kind_{k}")) for k in TaskKind],
        sorts=[(key, page.t(f"sort_{key}")) for key in QUEUE_SORTS],
        my_grids=list(principal.grids) if worker else None, recorded=recorded, undone=undone,
        may_claim=principal.role in PERMISSIONS["tasks.claim"],
        may_supervise=principal.role in PERMISSIONS["tasks.supervise"], csv=csv_href(page.request),
    )  # fmt: skip


def _outcome_choice(page: Page, outcome: VisitOutcome) -> str:
    """Return an outcome as the form offers it: a face verification's in what a worker did."""
    key = f"outcome_choice_{outcome}"
    return page.t(key if key in catalogue() else f"outcome_{outcome}")


def _task_context(page: Page, task_id: int) -> dict[str, Any]:
    """Gather a task page: the task, the person, the reasons in words, the recent traces."""
    task = page.session.get(ReviewTask, task_id)
    if task is None:
        raise NotFound(no_task(task_id))
    hide_outside_grids(page.principal, task.grid_code, absent=no_task(task_id))
    person = page.session.get(Person, task.person_id)
    assert person is not None  # a task's person is a foreign key
    page.audit("persons.read", "person", person.person_ref, {"task": task_id})
    view = person_view(
        page.session, store=page.services.store, person_ref=person.person_ref,
        today=page.today(), window_days=90, per_source=10, traces=page.services.traces,
    )  # fmt: skip
    kind = TaskKind(task.kind)
    claim_live = (
        task.status == TaskStatus.CLAIMED
        and task.claim_expires_at is not None
        and task.claim_expires_at > utcnow()
    )
    recorded_by = task.outcome_detail.get("by") if task.status == TaskStatus.DONE else None
    supervisor = page.principal.role in PERMISSIONS["tasks.supervise"]
    return {
        "task": task,
        "address": person.address,
        "phone": person.phone,
        "age": age_on(person.birth_date, page.today()),
        "claim": _claim_state(page, task.claimed_by if claim_live else None),
        "claimable": kind != TaskKind.FACE_VERIFICATION
        and page.principal.role in PERMISSIONS["tasks.claim"],
        "may_supervise": supervisor,
        "outcome_label": None if task.outcome is None else page.t(f"outcome_{task.outcome}"),
        "recorded_by": recorded_by,
        "may_undo": recorded_by is not None
        and task.closed_run_id is None
        and (recorded_by == page.principal.name or supervisor),
        "kind_label": page.t(f"kind_{kind}"),
        "person": view,
        "why": why_listed(
            page.lang,
            cause=task.cause,
            task_reasons=task.reasons,
            current=None
            if view.assessment is None
            else {"level": view.assessment.level, **view.assessment.reasons},
            due_on=task.due_on,
            today=page.today(),
        ),
        "level_as_of": None if view.assessment is None else view.assessment.as_of,
        "traces": [
            (source_name(page, view, source), rows) for source, rows in view.timeline.items()
        ],
        "is_open": task.status in LIVE_TASK_STATUSES,
        "outcomes": [
            (str(o), _outcome_choice(page, o)) for o in VisitOutcome if o in OUTCOMES_BY_KIND[kind]
        ],
        "may_record": page.principal.role in PERMISSIONS["tasks.outcome"],
        "today": page.today(),
        "switch_page": f"/web/tasks/{task_id}",
    }


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(
    task_id: Id,
    page: Page = Depends(signed_in("tasks.read")),  # noqa: B008
    done: str | None = None,
) -> Response:
    """Show a task: the person, masked number, reasons in plain words, recent traces, form.

    Its outcome form comes back filled in with what was typed before the session ended
    (sign_in_again): checked again, shown with its errors, recorded only when submitted.
    """
    context = await page.run(lambda: _task_context(page, task_id))
    notice = page.t(f"task_{done}") if done in ("claimed", "released", "undone") else None
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    kept = kept_form(page, OUTCOME_FIELDS)
    if kept is not None and context["is_open"] and context["may_record"]:
        values = kept
        allowed = {value for value, _ in context["outcomes"]}
        errors, _ = _validate_outcome(page, values, allowed, confirming=False)
        notice = page.t("form_kept")
    response = page.render(
        "task.html", **context, values=values, errors=errors, notice=notice
    )  # fmt: skip
    if kept is not None:
        response.delete_cookie(KEPT_COOKIE, path="/web")
    return response


@router.post("/tasks/{task_id}/draft", response_class=HTMLResponse)
async def task_draft(
    task_id: Id,
    request: Request,
    page: Page = Depends(signed_in("tasks.outcome")),  # noqa: B008
) -> Response:
    """Show a task's outcome form again as typed, recording nothing (the language switch).

    The form's switch button posts here with ?lang=: the page comes back in the other
    language with the typed values, unchecked until the form is submitted.
    """
    form = await form_of(request, page.web)
    values = {name: form[name][:n] for name, n in OUTCOME_FIELDS.items() if name in form}
    context = await page.run(lambda: _task_context(page, task_id))
    return page.render("task.html", **context, values=values, errors={}, notice=None)


def _parse_day(raw: str, field_name: str, errors: dict[str, str], page: Page) -> dt.date | None:
    """Parse an ISO day from a form field, noting a readable error beside the field."""
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        errors[field_name] = page.t("bad_date")
        return None


def _validate_outcome(
    page: Page, values: dict[str, str], allowed: set[str], *, confirming: bool = True
) -> tuple[dict[str, str], dict[str, Any]]:
    """Check an outcome form; return errors by field and the parsed outcome.

    A `deceased` asks for the date of death on its confirmation step: before it
    (`confirming` false) a missing date is no error.
    """
    errors: dict[str, str] = {}
    outcome = values.get("outcome", "")
    if not outcome:
        errors["outcome"] = page.t("required")
    elif outcome not in allowed:
        errors["outcome"] = page.t("outcome_choose")
    on = _parse_day(values.get("on", ""), "on", errors, page) or page.today()
    if on > page.today():
        errors["on"] = page.t("date_in_future")
    died_on = _parse_day(values.get("died_on", ""), "died_on", errors, page)
    if outcome == VisitOutcome.DECEASED and died_on is None and "died_on" not in errors:
        if confirming:
            errors["died_on"] = page.t("required")
    elif outcome != VisitOutcome.DECEASED and died_on is not None:
        errors["died_on"] = page.t("only_for_deceased")
    elif died_on is not None and died_on > on:
        errors["died_on"] = page.t("died_after_visit")
    region = values.get("region", "").strip()
    if outcome == VisitOutcome.MOVED_AWAY and not (region.isdigit() and len(region) == 6):
        errors["region"] = page.t("bad_region") if region else page.t("required")
    note = values.get("note", "").strip()
    if len(note) > 500:
        errors["note"] = page.t("note_too_long")
    parsed = {
        "outcome": outcome, "on": on, "died_on": died_on,
        "region": region if outcome == VisitOutcome.MOVED_AWAY else None, "note": note or None,
    }  # fmt: skip
    return errors, parsed


@router.post("/tasks/{task_id}/outcome", response_class=HTMLResponse)
async def task_outcome(
    task_id: Id,
    request: Request,
    page: Page = Depends(signed_in("tasks.outcome")),  # noqa: B008
) -> Response:
    """Record a visit's outcome from the form; errors are shown beside their fields.

    A `deceased` is recorded only from its confirmation step, which repeats who it is and
    asks for the date of death: a slip of the finger must not suspend a living person.
    """
    values = await form_of(request, page.web)
    confirming = values.get("confirm") == "yes"

    def work() -> tuple[str, dict[str, str], dict[str, Any] | None]:
        page.audit("tasks.outcome", "review_task", task_id, {
            k: v for k, v in values.items() if k in ("outcome", "on", "died_on", "region")
        })  # fmt: skip
        task = ensure_may_settle(
            page.session, task_id=task_id, actor=page.principal.name, now=utcnow(),
            grids=page.principal.grids if page.principal.role == Role.GRID_WORKER else None,
        )  # fmt: skip
        allowed = {str(o) for o in OUTCOMES_BY_KIND[TaskKind(task.kind)]}
        errors, parsed = _validate_outcome(page, values, allowed, confirming=confirming)
        if "on" not in errors and parsed["on"] < task.opened_on:
            errors["on"] = page.t("visit_before_task", opened=task.opened_on.isoformat())
        died_on = parsed["died_on"]
        if died_on is not None and "died_on" not in errors:
            # Said at the first step, in the page's words, not only when confirming.
            born = born_on(page.session, task)
            if born is not None and died_on < born:
                errors["died_on"] = page.t("died_before_birth")
        deceased = parsed["outcome"] == VisitOutcome.DECEASED
        if not errors and deceased and not confirming:
            page.session.rollback()  # nothing recorded yet: the confirmation step records it
            return "confirm", {}, _task_context(page, task_id)
        if not errors:
            try:
                record_outcome(
                    page.session, task_id=task_id, outcome=parsed["outcome"],
                    actor=page.principal.name, on=parsed["on"], died_on=parsed["died_on"],
                    region=parsed["region"], note=parsed["note"], today=page.today(),
                )  # fmt: skip
                return "recorded", {}, None
            except OutcomeInvalid as error:
                # The domain names the field first ("region: ..."): show it there.
                name, _, text = str(error).partition(": ")
                errors[name if name in ("outcome", "on", "died_on", "region") else "outcome"] = (
                    text or str(error)
                )
        page.session.rollback()  # nothing of a refused form is kept (the audit is re-written)
        page.audit("tasks.outcome.refused", "review_task", task_id, {"fields": sorted(errors)})
        return (
            ("confirm" if deceased and confirming else "task"),
            errors,
            _task_context(page, task_id),
        )

    step, errors, context = await page.run(work)
    if context is None:
        return RedirectResponse(f"/web/queue?recorded={task_id}", 303)
    if step == "confirm":
        return page.render(
            "task_confirm.html", status=422 if errors else 200, **context, values=values,
            errors=errors,
        )  # fmt: skip
    return page.render("task.html", status=422, **context, values=values, errors=errors)


def _back_to(values: dict[str, str], fallback: str) -> str:
    """Return where a claim, release or undo form asked to go back to (our pages only)."""
    return safe_next(values.get("next")) or fallback


async def _task_action(
    request: Request, page: Page, task_id: int, action: str, act: Callable[[], object],
    done: str,
) -> Response:  # fmt: skip
    """Run a claim, release or undo in the request's transaction, audited either way.

    A refusal (claimed by someone else, taken up by a run) is audited as refused and shown
    as a page; nothing else of it is kept.
    """
    values = await form_of(request, page.web)
    refused = await page.run(
        lambda: page.attempt(action, "review_task", task_id, act, (ClaimRefused, UndoRefused))
    )
    if refused is not None:
        return await error_response(request, 409, page.t(f"{action.replace('.', '_')}_refused"))
    back = _back_to(values, f"/web/tasks/{task_id}")
    mark = ("&" if "?" in back else "?") + f"done={done}" if back.startswith("/web/tasks/") else ""
    return RedirectResponse(back + mark, 303)


@router.post("/tasks/{task_id}/claim")
async def task_claim(
    task_id: Id,
    request: Request,
    page: Page = Depends(signed_in("tasks.claim")),  # noqa: B008
) -> Response:
    """Claim a task ("I'm going"): others see who has it until the claim lapses."""
    worker = page.principal.role == Role.GRID_WORKER
    return await _task_action(
        request, page, task_id, "tasks.claim",
        lambda: claim_task(
            page.session, task_id=task_id, claimant=page.principal.name, now=utcnow(),
            minutes=page.services.settings.api_claim_minutes,
            grids=page.principal.grids if worker else None,
        ),
        "claimed",
    )  # fmt: skip


@router.post("/tasks/{task_id}/release")
async def task_release(
    task_id: Id,
    request: Request,
    page: Page = Depends(signed_in("tasks.claim")),  # noqa: B008
) -> Response:
    """Release a claim: the claimant's own, or anyone's for a supervisor."""
    return await _task_action(
        request, page, task_id, "tasks.release",
        lambda: release_task(
            page.session, task_id=task_id, actor=page.principal.name,
            any_claimant=page.principal.role in PERMISSIONS["tasks.supervise"],
        ),
        "released",
    )  # fmt: skip


@router.post("/tasks/{task_id}/undo")
async def task_undo(
    task_id: Id,
    request: Request,
    page: Page = Depends(signed_in("tasks.outcome")),  # noqa: B008
) -> Response:
    """Undo a recorded outcome no run has taken up yet: the task is open again."""

    def undo() -> object:
        authorize_grid(page.principal, task_grid(page.session, task_id=task_id))
        return undo_outcome(
            page.session, task_id=task_id, actor=page.principal.name, on=page.today(),
            any_recorder=page.principal.role in PERMISSIONS["tasks.supervise"],
        )  # fmt: skip

    return await _task_action(request, page, task_id, "tasks.undo", undo, "undone")


@router.get("/visits", response_class=HTMLResponse)
async def my_visits(page: Page = Depends(signed_in("tasks.outcome"))) -> Response:  # noqa: B008
    """List the outcomes the caller recorded lately; those no run took up yet can be undone."""
    days = page.services.settings.web_visits_days
    since = page.today() - dt.timedelta(days=days)
    export = wants_csv(page.request)

    def work() -> list[Any]:
        page.audit("tasks.visits.read", "client", page.principal.client_id,
                   {"days": days, "format": "csv" if export else "html"})  # fmt: skip
        return recorded_visits(
            page.session, actor=page.principal.name, since=since, limit=VISITS_SHOWN
        )

    rows = await page.run(work)
    visits = [
        {**vars(row), "kind_label": page.t(f"kind_{row.kind}"),
         "outcome_label": page.t(f"outcome_{row.outcome}")}
        for row in rows
    ]  # fmt: skip
    if export:
        return csv_response(
            name="my-visits", day=page.today(), columns=[page.t(k) for k in VISITS_CSV],
            rows=[[v["visited_on"], v["person_ref"], v["name"], v["address"], v["kind_label"],
                   v["outcome_label"], page.t("taken_up" if v["taken_up"] else "not_taken_up")]
                  for v in visits],
        )  # fmt: skip
    return page.render(
        "visits.html", visits=visits, days=days, since=since, csv=csv_href(page.request)
    )


# Persons (the dashboard and runs are in api.web.supervision).


@router.get("/persons", response_class=HTMLResponse)
def find_person(
    ref: str = "",
    page: Page = Depends(signed_in("persons.read")),  # noqa: B008
) -> Response:
    """Open a person's file from the search box."""
    return RedirectResponse(f"/web/persons/{quote(ref.strip()[:32], safe='')}", 303)


@router.get("/persons/{person_ref}", response_class=HTMLResponse)
async def person_page(
    person_ref: str,
    page: Page = Depends(signed_in("persons.read")),  # noqa: B008
) -> Response:
    """Show a person's file: level and its explanation, certification, tasks, timeline."""

    def work() -> Any:
        page.audit("persons.read", "person", person_ref[:64])
        view = person_view(
            page.session, store=page.services.store, person_ref=person_ref[:32],
            today=page.today(), window_days=180, per_source=500, traces=page.services.traces,
        )  # fmt: skip
        hide_outside_grids(page.principal, view.grid_code, absent=no_person(person_ref[:32]))
        return view

    view = await page.run(work)
    last_day = view.assessment.as_of if view.assessment else page.today()
    first_day = last_day - dt.timedelta(days=180)
    marks = []
    if view.assessment and view.assessment.reasons.get("death"):
        died = dt.date.fromisoformat(view.assessment.reasons["death"])
        marks.append((died, page.t("died_on")))
    lanes = [
        (source_name(page, view, s), [r.day for r in rows]) for s, rows in view.timeline.items()
    ]
    chart = charts.timeline(
        lanes,
        first_day=first_day, last_day=last_day, title=page.t("timeline"), marks=marks,
    )  # fmt: skip
    return page.render(
        "person.html", person=view, chart=chart,
        explanation=None if view.assessment is None
        else plain_reasons(view.assessment.reasons, page.lang),
        level_label=None if view.assessment is None
        else page.t(f"level_{view.assessment.level}"),
        tasks=[(t, page.t(f"kind_{t.kind}")) for t in view.open_tasks],
        payments=payment_rows(
            view.payments, page.lang, timezone=ZoneInfo(page.services.settings.timezone)
        ),
    )  # fmt: skip


def source_name(page: Page, view: PersonRead, source: str) -> str:
    """Return a trace source in the page's words: its declared label, else the messages'."""
    declared = view.source_labels.get(source, {}).get(page.lang)
    return declared or page.t(f"source_{source}")
