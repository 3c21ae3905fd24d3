"""Nothing is lost: whatever a delivery holds, every row is loaded, re-delivered or quarantined."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liveness.ingest.runner import ingest_paths
from liveness.services import Services

GOOD = "T{n},C1,2025-02-01 08:{m:02d}:00,330700,bus,,,true"
FIELDS = st.one_of(
    st.just(""),
    st.sampled_from(["2025-13-40 25:00:00", "yesterday", "C1", "真", "bus", "true", "x,y", '"']),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12),
)
ROW = st.one_of(
    st.builds(lambda n, m: ("good", n, m), st.integers(0, 30), st.integers(0, 59)),
    st.lists(FIELDS, min_size=1, max_size=10).map(lambda fields: ("junk", ",".join(fields))),
)
counter = itertools.count()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, min_size=1, max_size=25))
def test_rows_read_equal_loaded_plus_redelivered_plus_quarantined(
    rows: list[tuple[object, ...]],
    services_factory: Callable[[str], Services],
    tmp_path_factory,  # type: ignore[no-untyped-def]
) -> None:
    services = _services(services_factory)
    lines = [GOOD.format(n=row[1], m=row[2]) if row[0] == "good" else str(row[1]) for row in rows]
    folder: Path = tmp_path_factory.mktemp("delivery")
    path = folder / f"transit_{next(counter)}.csv"
    path.write_text("record_id,card_no,tapped_at,city_code,mode,line,station,face_match\n"
                    + "\n".join(lines) + "\n", encoding="utf-8")  # fmt: skip
    (report,) = ingest_paths(services, source="transit", paths=[path])
    assert report.error is None
    assert report.loaded + report.redelivered + report.quarantined == report.rows_read


_cache: dict[str, Services] = {}


def _services(factory: Callable[[str], Services]) -> Services:
    # One database for every example: re-deliveries across examples are part of the test.
    if "sqlite" not in _cache:
        _cache["sqlite"] = factory("sqlite")
    return _cache["sqlite"]
