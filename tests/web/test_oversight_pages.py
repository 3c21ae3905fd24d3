"""Oversight pages: the suspension forecast, the audit log, CSV exports, the visit sheet."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select, update

from api.web import oversight
from api.web.export import csv_cell
from liveness.certification.run import certify
from liveness.db import session_scope
from models import (
    AuditEntry,
    DeathMatch,
    DeathRecord,
    ListEntry,
    Person,
    RecordStatus,
    Run,
)
from tests.api.conftest import GRIDS, World
from tests.api.payments import suspend_amend_hold
from tests.web.conftest import signed_in


def _today(world: World) -> dt.date:
    return dt.datetime.now(ZoneInfo(world.services.settings.timezone)).date()


def _table(answer: httpx.Response) -> list[list[str]]:
    """Return a CSV answer's rows (header first), checking the BOM and the UTF-8 encoding."""
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.content.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8").removeprefix("\ufeff"))))


def _audited(world: World, action: str) -> list[AuditEntry]:
    with session_scope(world.services.sessions) as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        session.expunge_all()
    return rows


def test_a_csv_cell_never_runs_as_a_formula() -> None:
    for dangerous in ("=1+1", "+1", "-1+cmd", "@SUM(A1)", "\t=x", "\r=x"):
        assert csv_cell(dangerous) == "'" + dangerous
    assert csv_cell("张三") == "张三" and csv_cell(None) == ""
    assert csv_cell(-5) == "-5" and csv_cell(dt.date(2025, 5, 1)) == "2025-05-01"


def test_the_queue_exports_every_matching_task_in_scope_as_csv(web_world: World) -> None:
    with session_scope(web_world.services.sessions) as session:
        session.execute(
            update(Person).where(Person.person_ref == "P2").values(name="=HYPERLINK(1)")
        )
    client = signed_in(web_world, "grid_worker")
    page = client.get("/web/queue")
    assert 'href="/web/queue?format=csv"' in page.text
    answer = client.get("/web/queue?format=csv")
    disposition = answer.headers["content-disposition"]
    assert disposition == f'attachment; filename="queue-{_today(web_world).isoformat()}.csv"'
    header, *rows = _table(answer)
    assert len(header) == 13 and "姓名" in header
    # The seeded open tasks of the worker's grid G1, every one (not one page).
    expected = {ref for ref in ("P2", "P3", "P6") if GRIDS[ref] == "G1"}
    assert {row[0] for row in rows} == expected
    assert "'=HYPERLINK(1)" in [row[1] for row in rows]
    exported = [e for e in _audited(web_world, "tasks.read") if e.detail.get("format") == "csv"]
    assert [e.target_ref for e in exported] == ["G1"]
    # A filter carries over: the operator's export of grid G2 alone.
    operator = signed_in(web_world, "operator")
    _, *g2 = _table(operator.get("/web/queue?grid=G2&format=csv"))
    assert {row[0] for row in g2} == {ref for ref, grid in GRIDS.items() if grid == "G2"}


def test_the_other_tables_export_as_csv(web_world: World) -> None:
    operator = signed_in(web_world, "operator")
    _, *runs = _table(operator.get("/web/runs?format=csv"))
    assert [row[0] for row in runs] == [str(web_world.run_id)]  # the one seeded run
    suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    _, *held = _table(operator.get("/web/approvals?format=csv"))
    assert [row[0] for row in held] == ["P1"]  # the one reinstatement held for approval
    assert 'href="/web/approvals?format=csv"' in operator.get("/web/approvals").text
    worker = signed_in(web_world, "grid_worker")
    header, *visits = _table(worker.get("/web/visits?format=csv"))
    assert visits == [] and len(header) == 7
    refused = worker.get("/web/runs?format=csv")  # not a grid worker's table: a page says so
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")


def test_the_audit_log_is_for_auditors_filtered_and_newest_first(web_world: World) -> None:
    worker = signed_in(web_world, "grid_worker")
    assert worker.get("/web/persons/P4").status_code == 404  # another grid: refused, on record
    assert worker.get("/web/audit").status_code == 403
    auditor = signed_in(web_world, "auditor")
    page = auditor.get("/web/audit?actor=grid_worker&lang=en")
    assert page.status_code == 200 and 'href="/web/audit"' in page.text  # in the navigation
    with session_scope(web_world.services.sessions) as session:
        expected = list(
            session.scalars(
                select(AuditEntry.id).where(AuditEntry.actor == "grid_worker")
                .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            )
        )  # fmt: skip
        refused = set(
            session.scalars(
                select(AuditEntry.id).where(
                    AuditEntry.actor == "grid_worker", AuditEntry.action.like("%.refused")
                )
            )
        )
    shown = [int(i) for i in _attr(page.text, "data-entry")]
    assert shown == expected and refused  # every one, newest first
    only = auditor.get("/web/audit?actor=grid_worker&refused=1")
    assert {int(i) for i in _attr(only.text, "data-entry")} == refused
    assert only.text.count('class="refused"') == len(refused)
    # The worker's refused audit read is found by its action, and shown as refused.
    by_action = auditor.get("/web/audit?action=audit.read")
    assert "audit.read.refused" in by_action.text  # (the page is in English since ?lang=en)
    assert '<strong class="badge">refused</strong>' in by_action.text
    # Times in the agency's zone; a day range outside everything finds nothing.
    zone = ZoneInfo(web_world.services.settings.timezone)
    with session_scope(web_world.services.sessions) as session:
        newest = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert newest is not None
        local = newest.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    assert local in auditor.get("/web/audit").text
    assert 'data-entry="' not in auditor.get("/web/audit?from=2001-01-01&to=2001-01-02").text
    today = _today(web_world).isoformat()
    assert 'data-entry="' in auditor.get(f"/web/audit?from={today}&to={today}").text
    # Reading it is audited; its CSV export too, every matching row.
    header, *rows = _table(auditor.get("/web/audit?actor=grid_worker&format=csv"))
    assert len(rows) == len(expected) and len(header) == 8
    reads = _audited(web_world, "audit.read")
    assert reads and reads[-1].detail["format"] == "csv" and reads[-1].actor == "auditor"


def _attr(html: str, name: str) -> list[str]:
    """Return the values of an attribute in a page, in order."""
    return re.findall(rf'{name}="([^"]*)"', html)


def _add_death(world: World, ref: str, died_on: dt.date) -> None:
    """Add a cremation record naming a person by identity number, as ingestion would."""
    with session_scope(world.services.sessions) as session:
        person = session.scalars(select(Person).where(Person.person_ref == ref)).one()
        session.add(
            DeathRecord(
                source="cremation", record_id="R-" + ref, id_number=person.id_number,
                id_status="valid", name=person.name, sex=person.sex,
                birth_date=person.birth_date, died_on=died_on, recorded_on=died_on,
                person_id=person.id, match=DeathMatch.ID_NUMBER, confidence=1.0,
                status=RecordStatus.ACTIVE,
            )
        )  # fmt: skip


def _counts(world: World) -> tuple[int, int, int]:
    with session_scope(world.services.sessions) as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Run, ListEntry, DeathRecord)
        )


def test_the_forecast_shows_what_the_next_run_will_suspend_and_why(web_world: World) -> None:
    today = _today(web_world)
    died = today - dt.timedelta(days=40)
    _add_death(web_world, "P3", died)
    for role in ("grid_worker", "inspector"):
        assert signed_in(web_world, role).get("/web/suspensions/next").status_code == 403
    operator = signed_in(web_world, "operator")
    before = _counts(web_world)
    page = operator.get("/web/suspensions/next")
    assert page.status_code == 200, page.text[:300]
    assert 'href="/web/suspensions/next"' in page.text  # in the navigation
    assert _counts(web_world) == before  # nothing written
    shown = set(zip(_attr(page.text, "data-person"), _attr(page.text, "data-reason"), strict=True))
    _, *rows = _table(operator.get("/web/suspensions/next?format=csv"))
    assert {row[0] for row in rows} == {ref for ref, _ in shown}
    assert _counts(web_world) == before
    reads = _audited(web_world, "suspensions.forecast.read")
    assert [r.detail["format"] for r in reads] == ["html", "csv"]
    # The death just recorded is among the reasons, with its source and date, in words.
    assert ("P3", "deceased") in shown
    assert "R-P3" in page.text and died.isoformat() in page.text and "火化" in page.text
    # The run itself, as of the same day, lists the very same persons and reasons.
    services = web_world.services
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=today, store=services.store, policies=services.policies,
                      timezone=services.settings.timezone)  # fmt: skip
        published = {
            (ref, str(reason))
            for ref, reason in session.execute(
                select(Person.person_ref, ListEntry.reason)
                .join(Person, Person.id == ListEntry.person_id)
                .where(ListEntry.run_id == run.id, ListEntry.action.in_(["suspend", "amend"]))
            )
        }
    assert published == shown


def test_the_forecast_is_reused_for_its_minutes_then_tried_again(
    web_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[dt.date] = []
    real = oversight.forecast_suspensions

    def counting(*args: Any, **kwargs: Any) -> Any:
        tried.append(kwargs["as_of"])
        return real(*args, **kwargs)

    monkeypatch.setattr(oversight, "forecast_suspensions", counting)
    operator = signed_in(web_world, "operator")
    first = operator.get("/web/suspensions/next")
    again = operator.get("/web/suspensions/next?format=csv")
    assert first.status_code == again.status_code == 200 and len(tried) == 1
    assert "data-computed" in first.text
    # A recorded death shows once the forecast is tried again (here: no reuse at all).
    _add_death(web_world, "P3", _today(web_world) - dt.timedelta(days=40))
    assert "R-P3" not in operator.get("/web/suspensions/next").text and len(tried) == 1
    monkeypatch.setattr(web_world.services.settings, "web_forecast_minutes", 0)
    assert "R-P3" in operator.get("/web/suspensions/next").text and len(tried) == 2


def test_the_visit_sheet_lists_a_grids_open_home_visits_to_print(web_world: World) -> None:
    worker = signed_in(web_world, "grid_worker")
    queue = worker.get("/web/queue")
    assert 'href="/web/queue/sheet?grid=G1"' in queue.text  # linked from the queue
    sheet = worker.get("/web/queue/sheet?grid=G1")
    assert sheet.status_code == 200
    # G1's open home visits, not its face verification (P6) nor another grid's (P4).
    expected = {web_world.tasks["visit_g1_low"], web_world.tasks["visit_g1_high"]}
    assert {int(t) for t in _attr(sheet.text, "data-task")} == expected
    assert "张P2" in sheet.text and "13800000000" in sheet.text and "上门" in sheet.text
    assert worker.get("/web/queue/sheet?grid=G2").status_code == 403
    reads = [e for e in _audited(web_world, "tasks.read") if e.detail.get("sheet")]
    assert [e.target_ref for e in reads] == ["G1"]
    # Printed on A4, without the navigation.
    css = worker.get("/web/static/style.css").text
    print_css = css[css.index("@media print") :]
    assert "size: A4" in print_css and "header.top" in print_css and ".no-print" in print_css
