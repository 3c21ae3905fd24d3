"""The approvals inbox: supervisors approve or reject held reinstatements, four eyes."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.routers.common import Id
from api.web.export import csv_href, csv_response, wants_csv
from api.web.formats import money_text
from api.web.i18n import label
from api.web.pages import Page, error_response, form_of, page_count, page_number, signed_in
from api.web.payments import actor_text
from liveness.lists import ApprovalRefused, approve_entry, reject_entry
from liveness.views.approvals import waiting_approvals

router = APIRouter(prefix="/web", include_in_schema=False)

PAGE_SIZE = 25  # rows of the inbox per page
DONE = ("approved", "rejected")
CSV_COLUMNS = ("person_ref", "name", "id_number", "approval_benefit", "approval_reason",
               "approval_effective", "approval_amount", "approval_caused_by", "as_of")  # fmt: skip


@router.get("/approvals", response_class=HTMLResponse)
async def approvals_page(
    page: Page = Depends(signed_in("lists.approve")),  # noqa: B008
    number: int = Depends(page_number),
    done: str | None = None,
    entry: int | None = None,
) -> Response:
    """List the held reinstatements waiting for a second operator, oldest first, paged."""
    export = wants_csv(page.request)  # every waiting entry, not one page

    def work() -> tuple[list[dict[str, object]], int]:
        shown = {"page": None if export else number, "format": "csv" if export else "html"}
        page.audit("lists.approvals.read", "list", None, shown)
        rows, total = waiting_approvals(
            page.session, limit=None if export else PAGE_SIZE,
            offset=0 if export else (number - 1) * PAGE_SIZE,
        )  # fmt: skip
        lang = page.lang
        return [
            {**vars(row), "benefit_text": label(lang, "benefit", row.benefit_type),
             "reason_text": label(lang, "list_reason", row.reason),
             "amount_text": money_text(row.amount, lang),
             "caused_text": actor_text(row.caused_by, lang),
             "own": row.caused_by == page.principal.name}
            for row in rows
        ], total  # fmt: skip

    rows, total = await page.run(work)
    if export:
        return csv_response(
            name="approvals", day=page.today(), columns=[page.t(k) for k in CSV_COLUMNS],
            rows=[[r["person_ref"], r["name"], r["id_number_masked"], r["benefit_text"],
                   r["reason_text"], r["effective_on"], r["amount"], r["caused_text"],
                   r["run_as_of"]] for r in rows],
        )  # fmt: skip
    pages = page_count(total, PAGE_SIZE)
    return page.render(
        "approvals.html", rows=rows, total=total, page_no=min(number, pages), pages=pages,
        done=done if done in DONE else None, done_entry=entry, csv=csv_href(page.request),
    )  # fmt: skip


async def _decide(
    request: Request, page: Page, entry_id: int, action: str, act: Callable[[str], object]
) -> Response:
    """Approve or reject in the request's transaction, audited either way.

    A refusal (the operator caused the entry, it no longer waits, no reason given) is audited
    as refused and answered as a page in its language; nothing else of it is kept.
    """
    values = await form_of(request, page.web)
    reason = values.get("reason", "")

    def work() -> str | None:
        detail = {"reason": " ".join(reason.split())[:500]} if action == "lists.reject" else None
        refusal = page.attempt(
            action, "list_entry", entry_id, lambda: act(reason), (ApprovalRefused,), detail
        )
        return refusal.why if isinstance(refusal, ApprovalRefused) else None

    refused = await page.run(work)
    if refused is not None:
        status = 422 if refused == "no_reason" else 409
        return await error_response(
            request, status, None, message=page.t(f"approval_refused_{refused}")
        )
    done = "approved" if action == "lists.approve" else "rejected"
    return RedirectResponse(f"/web/approvals?done={done}&entry={entry_id}", 303)


@router.post("/approvals/{entry_id}/approve")
async def approve(
    entry_id: Id,
    request: Request,
    page: Page = Depends(signed_in("lists.approve")),  # noqa: B008
) -> Response:
    """Approve a held reinstatement as a second operator: a new entry publishes it."""
    return await _decide(
        request, page, entry_id, "lists.approve",
        lambda _: approve_entry(page.session, entry_id=entry_id, operator=page.principal.name),
    )  # fmt: skip


@router.post("/approvals/{entry_id}/reject")
async def reject(
    entry_id: Id,
    request: Request,
    page: Page = Depends(signed_in("lists.approve")),  # noqa: B008
) -> Response:
    """Reject a held reinstatement with a reason: the suspension stands, nothing is paid."""
    return await _decide(
        request, page, entry_id, "lists.reject",
        lambda reason: reject_entry(
            page.session, entry_id=entry_id, operator=page.principal.name, reason=reason
        ),
    )  # fmt: skip
