"""Local times are read in the configured time zone, daylight saving included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import ConnectorError, SourceConfig, get_connector

ARRIVED = dt.datetime(2026, 6, 15, 4, 0, tzinfo=dt.UTC)
HEADER = "record_id,card_no,tapped_at,city_code,face_match\n"


def _instants(path: Path, zone: str | ZoneInfo | None, **config: object) -> list[pd.Timestamp]:
    """Read a transit delivery in `zone` (None: the connector's default); return the taps."""
    configs = {"transit": SourceConfig(name="transit", **config)}
    options = {} if zone is None else {"timezone": zone}
    connector = get_connector("transit", configs, arrived_at=ARRIVED, **options)
    (batch,) = list(connector.read(path))
    assert batch.quarantined.empty, batch.quarantined
    return list(batch.rows["tapped_at"])


def _csv(tmp_path: Path, *times: str) -> Path:
    path = tmp_path / "transit.csv"
    rows = "".join(f"T{i},C1,{time},330700,true\n" for i, time in enumerate(times))
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# Summer (CEST, UTC+2) and winter (CET, UTC+1) wall-clock times in Berlin, in each form a
# delivery may use: the fast Arrow path, the general parser, a configured format.
@pytest.mark.parametrize(
    ("summer", "winter", "config"),
    [
        ("2025-07-01 10:00:00", "2025-01-15 10:00:00", {}),
        ("2025-07-01T10:00", "2025-01-15T10:00", {}),
        ("01/07/2025 10:00", "15/01/2025 10:00", {"date_formats": {"tapped_at": "%d/%m/%Y %H:%M"}}),
    ],
)
def test_a_zone_with_daylight_saving_reads_summer_and_winter(
    tmp_path: Path, summer: str, winter: str, config: dict[str, object]
) -> None:
    path = _csv(tmp_path, summer, winter)
    assert _instants(path, "Europe/Berlin", **config) == [
        _utc("2025-07-01 08:00"), _utc("2025-01-15 09:00"),
    ]  # fmt: skip
    assert _instants(path, ZoneInfo("Europe/Berlin"), **config) == [
        _utc("2025-07-01 08:00"), _utc("2025-01-15 09:00"),
    ]  # fmt: skip


def test_asia_shanghai_is_the_default_and_reads_as_before(tmp_path: Path) -> None:
    path = _csv(tmp_path, "2025-07-01 10:00:00", "2025-01-15T10:00", "2025-01-15 10:00:00+01:00")
    expected = [_utc("2025-07-01 02:00"), _utc("2025-01-15 02:00"), _utc("2025-01-15 09:00")]
    assert _instants(path, None) == expected
    assert _instants(path, "Asia/Shanghai") == expected


def test_a_naive_parquet_timestamp_is_local_time(tmp_path: Path) -> None:
    path = tmp_path / "transit.parquet"
    table = pa.table(
        {
            "record_id": ["T1", "T2"], "card_no": ["C1", "C1"],
            "tapped_at": pa.array([dt.datetime(2025, 7, 1, 10), dt.datetime(2025, 1, 15, 10)],
                                  pa.timestamp("us")),
            "city_code": ["330700", "330700"], "face_match": [True, True],
        }
    )  # fmt: skip
    pq.write_table(table, path)
    assert _instants(path, "Europe/Berlin") == [_utc("2025-07-01 08:00"), _utc("2025-01-15 09:00")]
    assert _instants(path, None) == [_utc("2025-07-01 02:00"), _utc("2025-01-15 02:00")]


def test_the_clock_change_reads_the_same_on_every_path(tmp_path: Path) -> None:
    # 02:30 on 26 October 2025 happens twice in Berlin: the first, summer time, is meant.
    # 02:30 on 30 March 2025 never happens: the first instant after the gap, 03:00 CEST.
    fast = _csv(tmp_path, "2025-10-26 02:30:00", "2025-03-30 02:30:00")
    expected = [_utc("2025-10-26 00:30"), _utc("2025-03-30 01:00")]
    assert _instants(fast, "Europe/Berlin") == expected
    general = _csv(tmp_path, "2025-10-26T02:30", "2025-03-30T02:30")
    assert _instants(general, "Europe/Berlin") == expected


def test_a_time_after_the_arrival_names_the_local_offset(tmp_path: Path) -> None:
    # The delivery arrived at 04:00 UTC: 06:00 in Berlin's summer time, 12:00 in Shanghai.
    path = _csv(tmp_path, "2026-06-15 08:00:00")
    for zone, shown in (("Europe/Berlin", "2026-06-15 06:00 +02:00"),
                        ("Asia/Shanghai", "2026-06-15 12:00 +08:00")):  # fmt: skip
        connector = get_connector(
            "transit", {"transit": SourceConfig(name="transit")}, arrived_at=ARRIVED,
            timezone=zone,
        )  # fmt: skip
        (batch,) = list(connector.read(path))
        reasons = list(batch.quarantined["reason"])
        if zone == "Europe/Berlin":  # 08:00 in Berlin is 06:00 UTC: after the arrival
            assert reasons == [
                f"tapped_at 2026-06-15 08:00 is after the delivery arrived ({shown})"
            ]
        else:  # 08:00 in Shanghai is 00:00 UTC: before it
            assert reasons == []
    winter = dt.datetime(2026, 1, 15, 4, 0, tzinfo=dt.UTC)
    connector = get_connector(
        "transit", {"transit": SourceConfig(name="transit")}, arrived_at=winter,
        timezone="Europe/Berlin",
    )  # fmt: skip
    (batch,) = list(connector.read(_csv(tmp_path, "2026-01-15 08:00:00")))
    assert list(batch.quarantined["reason"]) == [
        "tapped_at 2026-01-15 08:00 is after the delivery arrived (2026-01-15 05:00 +01:00)"
    ]


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ConnectorError, match="unknown time zone 'Mars/Olympus'"):
        get_connector("transit", {}, timezone="Mars/Olympus")
