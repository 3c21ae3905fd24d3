"""A delivery without data rows is `empty`: it loads nothing, refuses nothing, duplicates nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.services import Services
from models import Delivery

HEADER = "record_id,card_no,tapped_at,city_code\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def services(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services]
) -> Services:
    return services_factory(request.param)


def test_header_only_files_are_empty_never_duplicates(services: Services, tmp_path: Path) -> None:
    # Two header-only files are byte for byte the same: the checksum alone made the second a
    # "duplicate" of the first, which had loaded nothing.
    first, second = tmp_path / "transit_1.csv", tmp_path / "transit_2.csv"
    first.write_text(HEADER, encoding="utf-8")
    second.write_text(HEADER, encoding="utf-8")
    reports = ingest_paths(services, source="transit", paths=[first, second])
    assert [(r.status, r.rows_read, r.loaded, r.error) for r in reports] == [
        ("empty", 0, 0, None),
        ("empty", 0, 0, None),
    ]
    with session_scope(services.sessions) as session:
        statuses = session.scalars(select(Delivery.status).order_by(Delivery.id)).all()
    assert statuses == ["empty", "empty"]


def test_a_zero_byte_file_is_empty_not_refused(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "cremation_0.csv"
    path.write_bytes(b"")
    (report,) = ingest_paths(services, source="cremation", paths=[path])
    assert (report.status, report.rows_read, report.error) == ("empty", 0, None)


def test_a_file_with_rows_after_an_empty_one_loads(services: Services, tmp_path: Path) -> None:
    empty, full = tmp_path / "a.csv", tmp_path / "b.csv"
    empty.write_text(HEADER, encoding="utf-8")
    full.write_text(HEADER + "T1,C1,2025-02-01 08:00:00,330700\n", encoding="utf-8")
    reports = ingest_paths(services, source="transit", paths=[empty, full, empty])
    assert [(r.status, r.loaded) for r in reports] == [("empty", 0), ("loaded", 1), ("empty", 0)]


def test_a_header_lacking_a_required_column_is_still_refused(
    services: Services, tmp_path: Path
) -> None:
    # No rows to lose, but a header that does not map is a configuration error worth saying.
    path = tmp_path / "transit.csv"
    path.write_text("record_id,card_no\n", encoding="utf-8")
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert report.status == "refused" and "tapped_at" in (report.error or "")
