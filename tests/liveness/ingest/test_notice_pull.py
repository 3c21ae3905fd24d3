"""A registry that cannot push: its death notices pulled from a SQL table or an HTTP feed, or
delivered as files, through the same path as the pushed ones."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.ingest import service as ingest_service
from liveness.ingest.notices import DeathNotice, receive_death_notices
from liveness.ingest.runner import ingest_paths
from liveness.ingest.service import ingest_pull
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from models import (
    Benefit,
    BenefitStatus,
    DatePrecision,
    DeathMatch,
    DeathRecord,
    Delivery,
    ListAction,
    ListEntry,
    Person,
    QuarantinedRow,
    SourceCursor,
)
from tests.liveness.conftest import REPO
from tests.liveness.ingest.test_ingest import CARDS, REGISTRY, on_roll, write

SOURCE = "registry_notice"
COLUMNS = (
    "record_id", "event", "id_number", "name", "sex", "birth_date", "region_code", "died_on",
    "registered_on",
)  # fmt: skip
P1 = {
    "record_id": "DR-1", "event": "registered", "id_number": "330702194501011230",
    "name": "张三", "sex": "M", "birth_date": "1945-01-01", "region_code": "330702",
    "died_on": "2025-04-10", "registered_on": "2025-04-11",
}  # fmt: skip
# The next notice, of someone else: the registry's table grows.
P2 = dict(
    P1, record_id="DR-2", id_number="330702195002021228", name="李四", sex="F",
    birth_date="1950-02-02", died_on="2025-04", registered_on="2025-04-20",
)  # fmt: skip
FEED = "https://crvs.example.gov.cn/api/v1/death-events"


def _deployment(tmp_path: Path, backend_url: str, transport: str) -> Services:
    """Return services whose `registry_notice` is pulled by `transport`, on a roll."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    sources = config / "sources.toml"
    body = sources.read_text(encoding="utf-8").replace(
        'path = "var/inbox/registry_notice"', f'transport = "{transport}"'
    )
    if transport == "sql":
        body += f'\n[{SOURCE}.sql]\nurl_secret = "crvs_db"\ntable = "death_events"\n'
    else:
        body += f'\n[{SOURCE}.http]\nurl = "{FEED}"\ncursor_param = "since"\n'
        body += 'records_key = "events"\npage_size = 2\n'
    sources.write_text(body, encoding="utf-8")
    database = tmp_path / "crvs.sqlite"
    settings = Settings(
        database_url=backend_url, evidence_dir=tmp_path / "evidence", config_dir=config,
        secrets={"crvs_db": f"sqlite:///{database}"},  # type: ignore[dict-item]
    )  # fmt: skip
    services = Services(settings)
    upgrade(services.engine)
    (tmp_path / "roll").mkdir()
    return on_roll(services, tmp_path / "roll", REGISTRY, CARDS)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, database_url_factory: Callable[[str], str]) -> str:
    return database_url_factory(request.param)


def _registry_table(database: Path, rows: list[dict[str, str]]) -> None:
    """Create (once) and fill the registry's table of death events, in a SQLite file."""
    with create_engine(f"sqlite:///{database}").begin() as connection:
        connection.execute(text(f"CREATE TABLE IF NOT EXISTS death_events ({', '.join(COLUMNS)})"))
        for row in rows:
            connection.execute(
                text(f"INSERT INTO death_events VALUES ({', '.join(':' + c for c in COLUMNS)})"),
                row,
            )


def _pull(services: Services) -> dict[str, Any]:
    """Pull the registry's notices as the scheduler's job does; return the delivery report."""
    with session_scope(services.sessions) as session:
        report = ingest_pull(
            session, source=SOURCE, context=services.ingest_context(),
            secrets=services.settings.secret_values(),
        )  # fmt: skip
    return report.as_dict()


def _watermark(services: Services) -> str | None:
    with session_scope(services.sessions) as session:
        cursor = session.get(SourceCursor, SOURCE)
        return None if cursor is None else cursor.watermark


def _status(services: Services, ref: str) -> BenefitStatus:
    with session_scope(services.sessions) as session:
        return session.scalars(
            select(Benefit.status).join(Person).where(Person.person_ref == ref)
        ).one()


def _suspensions(services: Services, ref: str) -> list[dt.date]:
    with session_scope(services.sessions) as session:
        return list(
            session.scalars(
                select(ListEntry.effective_on)
                .join(Person, Person.id == ListEntry.person_id)
                .where(Person.person_ref == ref, ListEntry.action == ListAction.SUSPEND)
            )
        )


def test_a_notice_pulled_from_a_sql_table_suspends_at_the_next_run(
    tmp_path: Path, backend_url: str
) -> None:
    services = _deployment(tmp_path, backend_url, "sql")
    _registry_table(tmp_path / "crvs.sqlite", [P1])

    first = _pull(services)
    assert (first["status"], first["rows_read"], first["loaded"]) == ("loaded", 1, 1)
    assert _watermark(services) == "2025-04-11"
    with session_scope(services.sessions) as session:
        record = session.scalars(select(DeathRecord).where(DeathRecord.source == SOURCE)).one()
        delivery = session.get(Delivery, record.delivery_id)
        assert delivery is not None and delivery.file_name == "sql pull"
        assert (record.record_id, record.match) == ("DR-1", DeathMatch.ID_NUMBER)

    # Nothing new: the row at the watermark is read again and counted as a re-delivery.
    second = _pull(services)
    assert (second["rows_read"], second["loaded"], second["redelivered"]) == (1, 0, 1)

    execute_run(services, as_of=dt.date(2025, 4, 30))
    assert _status(services, "P1") == BenefitStatus.SUSPENDED
    assert _suspensions(services, "P1") == [dt.date(2025, 4, 11)]

    # The table grows: only the new notice loads (the one at the watermark is read again),
    # and the cursor moves on.
    _registry_table(tmp_path / "crvs.sqlite", [P2])
    third = _pull(services)
    assert (third["loaded"], third["redelivered"]) == (1, 1)
    assert _watermark(services) == "2025-04-20"
    with session_scope(services.sessions) as session:
        record = session.scalars(select(DeathRecord).where(DeathRecord.record_id == "DR-2")).one()
        # known to the month only: the last day it allows, capped by the registration
        assert (record.died_on, record.died_on_precision) == (
            dt.date(2025, 4, 20), DatePrecision.MONTH,
        )  # fmt: skip
    services.engine.dispose()


class Feed:
    """A registry's paged feed of death events, as an httpx MockTransport serves it."""

    def __init__(self, events: list[dict[str, str]]) -> None:
        self.events = events
        self.asked: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        since = request.url.params.get("since")
        limit = int(request.url.params["limit"])
        self.asked.append(since)
        start = int(since) if since is not None else 0
        page = self.events[start : start + limit]
        following = start + len(page)
        # A page that reaches the end names no next cursor: the next pull asks for it again.
        next_cursor = str(following) if following < len(self.events) else None
        return httpx.Response(200, json={"events": page, "next_cursor": next_cursor})


def test_a_notice_pulled_from_an_http_feed_suspends_at_the_next_run(
    tmp_path: Path, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _deployment(tmp_path, backend_url, "http")
    withdrawn = dict(P2, record_id="DR-0", name="王五", event="voided")
    feed = Feed([withdrawn, dict(P2, record_id="DR-9", id_number=""), P1])
    built = ingest_service.make_transport

    def offline(config: Any, *, secrets: Any) -> Any:
        transport = built(config, secrets=secrets)
        transport.client = httpx.Client(transport=httpx.MockTransport(feed))
        return transport

    monkeypatch.setattr(ingest_service, "make_transport", offline)

    first = _pull(services)
    assert (first["rows_read"], first["loaded"], first["quarantined"]) == (3, 3, 0)
    # two pages of two: the second (the last) is where the next pull resumes
    assert feed.asked == [None, "2"] and _watermark(services) == "2"

    second = _pull(services)
    assert feed.asked[-1] == "2"
    assert (second["rows_read"], second["loaded"], second["redelivered"]) == (1, 0, 1)

    execute_run(services, as_of=dt.date(2025, 4, 30))
    assert _status(services, "P1") == BenefitStatus.SUSPENDED
    # A notice without an identity number suspends nobody (it opens a death review).
    assert _status(services, "P2") == BenefitStatus.ACTIVE
    with session_scope(services.sessions) as session:
        match = session.scalars(
            select(DeathRecord.match).where(DeathRecord.record_id == "DR-9")
        ).one()
    assert match == DeathMatch.UNCONFIRMED
    services.engine.dispose()


def test_notices_delivered_as_files_account_for_every_row(
    tmp_path: Path, services_factory: Callable[[str], Services]
) -> None:
    services = on_roll(services_factory("sqlite"), tmp_path, REGISTRY, CARDS)
    header = ",".join(COLUMNS) + "\n"

    def line(row: dict[str, str]) -> str:
        return ",".join(row[c] for c in COLUMNS) + "\n"

    # A notice pushed before: delivered again with other content, it is a conflict.
    with session_scope(services.sessions) as session:
        receive_death_notices(
            session, demographic_confidence=0.9,
            notices=[DeathNotice(event="registered", record_id="DR-7", died_on="2025-03-01",
                                 registered_on=dt.date(2025, 3, 2), name="王五")],
        )  # fmt: skip
    first = write(
        tmp_path, "notices_1.csv",
        header + line(P1) + line(dict(P2, died_on="2025-13"))
        + line(dict(P2, record_id="DR-7", name="王五", died_on="2025-03-02")),
    )  # fmt: skip
    (report,) = ingest_paths(services, source=SOURCE, paths=[first])
    assert (report.rows_read, report.loaded, report.quarantined) == (3, 1, 2)
    again = write(tmp_path, "notices_2.csv", header + line(P1) + line(dict(P1, died_on="2025-04")))
    (report,) = ingest_paths(services, source=SOURCE, paths=[again])
    assert (report.rows_read, report.loaded, report.redelivered, report.quarantined) == (
        2, 0, 1, 1,
    )  # fmt: skip
    with session_scope(services.sessions) as session:
        reasons_by_line = sorted(
            session.execute(
                select(QuarantinedRow.file_name, QuarantinedRow.line, QuarantinedRow.reason)
            ).all()
        )
    (bad_date, pushed), (changed,) = (
        [r for f, _, r in reasons_by_line if f == "notices_1.csv"],
        [r for f, _, r in reasons_by_line if f == "notices_2.csv"],
    )
    assert bad_date.startswith("bad partial_date value in died_on: '2025-13'")
    assert "record_id DR-7 was received in a pushed notify message" in pushed
    assert "record_id DR-1 came earlier" not in changed
    assert "record_id DR-1 was delivered in delivery" in changed and "notices_1.csv" in changed


def test_the_documented_pull_example_parses() -> None:
    from connectors import parse_source_configs

    lines = (REPO / "config" / "sources.toml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# --- example: registry_notice") + 1
    end = lines.index("# --- end example", start)
    example = "\n".join(line.removeprefix("#").strip() for line in lines[start:end])
    config = parse_source_configs(tomllib.loads(example))[SOURCE]
    assert config.transport == "http" and config.http is not None
    assert (config.http.cursor_param, config.http.records_key) == ("since", "events")
    assert json.dumps(config.http.url).startswith('"https://')
