"""The HTTP transport: paged JSON with a cursor, retries, fatal 4xx, against mocks and a server."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest

from connectors import (
    SOURCES,
    FatalError,
    HttpTransport,
    MissingColumns,
    RetriableError,
)
from tests.connectors.test_conformance import (
    SAMPLES,
    collect,
    connector_for,
    read_all,
    write_delivery,
)

URL = "https://api.example.org/v1/transit"
TOKEN = "tok-5ecret-value"


def tap(i: int) -> dict[str, Any]:
    return {
        "record_id": f"t{i}",
        "card_no": "C1",
        "tapped_at": f"2025-01-01T08:{i:02d}:00+08:00",
        "city_code": "330702",
    }


def paged(records: list[Any]) -> Callable[[httpx.Request], httpx.Response]:
    """Serve records in pages; the cursor is the offset of the next record, as text."""

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("cursor", "0"))
        limit = int(request.url.params["limit"])
        end = start + limit
        page = records[start:end]
        nxt = str(end) if end < len(records) else None
        return httpx.Response(200, json={"records": page, "next_cursor": nxt})

    return handler


class Recorder:
    """Wrap a handler, recording every request and answering scripted failures first."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response], script: list[Any]):
        self.handler = handler
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            if isinstance(step, httpx.Response):
                return step
        return self.handler(request)


def transport(
    handler: Callable[[httpx.Request], httpx.Response], sleeps: list[float] | None = None, **kw: Any
) -> HttpTransport:
    kw.setdefault("page_size", 2)
    return HttpTransport(
        url=URL,
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        sleep=(sleeps.append if sleeps is not None else _no_sleep),
        **kw,
    )


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected sleep of {seconds}s")


# --------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_http_loads_the_same_rows_as_files(tmp_path: Path, source: str) -> None:
    connector = connector_for(source)
    expected = read_all(connector, write_delivery(tmp_path / "ref", SAMPLES[source], "csv"))
    http = transport(paged(SAMPLES[source]), page_size=1)
    got = collect(http.pull(connector, watermark=None))
    assert got.quarantined.empty, got.quarantined.to_dict("records")
    pd.testing.assert_frame_equal(
        got.rows.drop(columns="_line"), expected.rows.drop(columns="_line")
    )
    assert got.rows["_line"].tolist() == list(range(1, len(SAMPLES[source]) + 1))


def test_json_typed_values_read_like_their_text(tmp_path: Path) -> None:
    text = [dict(tap(1), face_match="true", line="12"), dict(tap(2), face_match="false")]
    typed = [dict(tap(1), face_match=True, line=12), dict(tap(2), face_match=False, extra=None)]
    connector = connector_for("transit")
    a = collect(transport(paged(text)).pull(connector, watermark=None))
    b = collect(transport(paged(typed)).pull(connector, watermark=None))
    pd.testing.assert_frame_equal(a.rows.drop(columns="_extra"), b.rows.drop(columns="_extra"))
    assert b.rows["face_match"].tolist() == [True, False]


def test_conflicting_json_types_still_load() -> None:
    records = [dict(tap(1), line=12), dict(tap(2), line="K1"), dict(tap(3), line={"n": 1})]
    got = collect(transport(paged(records), page_size=5).pull(connector_for("transit"),
                                                              watermark=None))  # fmt: skip
    assert got.rows["line"].tolist() == ["12", "K1", '{"n":1}']


# ---------------------------------------------------------------------- paging, watermark


def test_follows_the_cursor_and_reports_the_watermark_per_page() -> None:
    records = [tap(i) for i in range(5)]
    rec = Recorder(paged(records), [])
    pull = transport(rec).pull(connector_for("transit"), watermark=None)
    marks, sizes = [], []
    for batch in pull.batches:
        sizes.append(len(batch.rows))
        marks.append(pull.watermark)
    assert sizes == [2, 2, 1]
    # after the last page (next_cursor null) the watermark is the cursor that asked for it
    assert marks == ["2", "4", "4"]
    assert [r.url.params.get("cursor") for r in rec.requests] == [None, "2", "4"]
    assert all(r.url.params["limit"] == "2" for r in rec.requests)
    assert all("authorization" not in r.headers for r in rec.requests)

    # resuming re-reads the last page, where new records are appended
    records.append(tap(5))
    again = transport(paged(records)).pull(connector_for("transit"), watermark="4")
    got = collect(again)
    assert got.rows["record_id"].tolist() == ["t4", "t5"]
    assert got.rows["_line"].tolist() == [1, 2]
    assert again.watermark == "4"


def test_an_empty_page_ends_the_pull() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        if cursor is None:
            return httpx.Response(200, json={"records": [tap(1)], "next_cursor": "a"})
        return httpx.Response(200, json={"records": [], "next_cursor": "b"})

    pull = transport(handler).pull(connector_for("transit"), watermark=None)
    assert collect(pull).rows["record_id"].tolist() == ["t1"]
    assert pull.watermark == "a"


def test_a_pull_with_nothing_new_keeps_the_watermark() -> None:
    pull = transport(paged([])).pull(connector_for("transit"), watermark="7")
    assert list(pull.batches) == []
    assert pull.watermark == "7"


def test_custom_parameter_and_key_names() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert set(request.url.params) <= {"after", "size"}
        after = request.url.params.get("after")
        if after is None:
            return httpx.Response(200, json={"data": [tap(1)], "next": 17})
        return httpx.Response(200, json={"data": [tap(2)], "next": None})

    pull = transport(
        handler, cursor_param="after", limit_param="size", records_key="data",
        next_cursor_key="next",
    ).pull(connector_for("transit"), watermark=None)  # fmt: skip
    assert collect(pull).rows["record_id"].tolist() == ["t1", "t2"]
    assert pull.watermark == "17"


def test_a_cursor_that_does_not_advance_is_fatal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"records": [tap(1)], "next_cursor": "same"})

    pull = transport(handler).pull(connector_for("transit"), watermark=None)
    with pytest.raises(FatalError, match="repeats the cursor"):
        list(pull.batches)


# ------------------------------------------------------------------------ bad records


def test_bad_records_are_quarantined_with_their_json() -> None:
    records: list[Any] = [tap(1), dict(tap(2), mode="plane"), "oops", {}, dict(tap(3), x=[1])]
    got = collect(transport(paged(records), page_size=10).pull(connector_for("transit"),
                                                               watermark=None))  # fmt: skip
    assert got.rows["record_id"].tolist() == ["t1", "t3"]
    assert got.rows["_line"].tolist() == [1, 5]
    assert json.loads(got.rows["_extra"].iloc[1]) == {"x": "[1]"}
    q = got.quarantined
    assert q["line"].tolist() == [2, 3, 4]
    assert json.loads(q["raw"].iloc[0]) == records[1]
    assert q["raw"].tolist()[1:] == ['"oops"', "{}"]
    assert q["reason"].tolist()[1:] == ["not a JSON object", "empty JSON object"]
    assert got.rows_read == 5


def test_missing_required_column_is_refused_naming_it() -> None:
    records = [{k: v for k, v in tap(1).items() if k != "tapped_at"}]
    with pytest.raises(MissingColumns, match="tapped_at") as info:
        list(transport(paged(records)).pull(connector_for("transit"), watermark=None).batches)
    assert f"http:{URL}" in str(info.value)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>proxy error</html>", "did not answer JSON"),
        (b'{"items": []}', "without a 'records' list"),
        (b"[1, 2]", "without a 'records' list"),
        (b'{"records": [], "next_cursor": {"a": 1}}', "must be a string or null"),
    ],
)
def test_malformed_answers_are_fatal(body: bytes, match: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    with pytest.raises(FatalError, match=match):
        list(transport(handler).pull(connector_for("transit"), watermark=None).batches)


# ------------------------------------------------------------------------------ retries


def test_5xx_and_timeouts_are_retried_with_exponential_backoff() -> None:
    script = [
        httpx.Response(500),
        httpx.ReadTimeout("slow"),
        httpx.Response(503),
        httpx.ConnectError("refused"),
    ]
    rec = Recorder(paged([tap(1)]), script)
    sleeps: list[float] = []
    pull = transport(rec, sleeps, backoff_s=0.5, max_retries=5).pull(
        connector_for("transit"), watermark=None
    )
    assert collect(pull).rows["record_id"].tolist() == ["t1"]
    assert sleeps == [0.5, 1.0, 2.0, 4.0]
    assert len(rec.requests) == 5


def test_429_is_retried() -> None:
    sleeps: list[float] = []
    rec = Recorder(paged([tap(1)]), [httpx.Response(429)])
    collect(transport(rec, sleeps, backoff_s=1).pull(connector_for("transit"), watermark=None))
    assert sleeps == [1.0]


def test_gives_up_after_max_retries_with_a_retriable_error() -> None:
    sleeps: list[float] = []
    rec = Recorder(lambda r: httpx.Response(503, text="busy"), [])
    http = transport(rec, sleeps, backoff_s=0.25, max_retries=3, token=TOKEN)
    with pytest.raises(RetriableError) as info:
        list(http.pull(connector_for("transit"), watermark="c9").batches)
    message = str(info.value)
    assert "HTTP 503" in message and URL in message and "cursor=c9" in message
    assert "4 attempt(s)" in message
    assert TOKEN not in message
    assert info.value.retriable
    assert sleeps == [0.25, 0.5, 1.0]
    assert len(rec.requests) == 4


def test_timeouts_exhausted_name_the_time_out() -> None:
    rec = Recorder(lambda r: httpx.Response(200), [httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(RetriableError, match="time-out"):
        list(transport(rec, [], max_retries=2).pull(connector_for("transit"),
                                                    watermark=None).batches)  # fmt: skip
    assert len(rec.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_4xx_is_fatal_at_once(status: int) -> None:
    body = "x" * 50 + " invalid cursor " + "y" * 400
    rec = Recorder(lambda r: httpx.Response(status, text=body), [])
    with pytest.raises(FatalError) as info:
        list(transport(rec).pull(connector_for("transit"), watermark=None).batches)
    message = str(info.value)
    assert f"HTTP {status}" in message and URL in message
    assert "invalid cursor" in message and "y" * 300 not in message  # a short excerpt
    assert not info.value.retriable
    assert len(rec.requests) == 1


def test_bearer_token_is_sent_and_never_shown() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        # a careless server echoes what it received
        return httpx.Response(401, text=f"bad token {TOKEN}")

    rec = Recorder(handler, [])
    http = transport(rec, token=TOKEN)
    with pytest.raises(FatalError) as info:
        list(http.pull(connector_for("transit"), watermark=None).batches)
    assert len(rec.requests) == 1
    assert TOKEN not in str(info.value) and "bad token ***" in str(info.value)
    assert TOKEN not in repr(http) and TOKEN not in http.origin


def test_credentials_in_the_url_stay_out_of_messages() -> None:
    http = HttpTransport(
        url="https://user:pw-123@api.example.org/v1",
        client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404))),
    )
    with pytest.raises(FatalError) as info:
        list(http.pull(connector_for("transit"), watermark=None).batches)
    assert "pw-123" not in str(info.value) and "pw-123" not in http.origin


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="page_size"):
        HttpTransport(url=URL, page_size=0)
    with pytest.raises(ValueError, match="max_retries"):
        HttpTransport(url=URL, max_retries=-1)


# ------------------------------------------------------------------------ a real server


class _Api(BaseHTTPRequestHandler):
    """Serve transit records in pages; fail, or answer slowly, as the test scripts it."""

    records: ClassVar[list[dict[str, Any]]] = []
    script: ClassVar[list[str]] = []
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        step = type(self).script.pop(0) if type(self).script else "ok"
        if step == "503":
            self._send(503, b"maintenance")
            return
        if step == "slow":
            time.sleep(0.5)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, b"unauthorised")
            return
        query = parse_qs(urlsplit(self.path).query)
        start = int(query.get("cursor", ["0"])[0])
        end = start + int(query["limit"][0])
        page = type(self).records[start:end]
        nxt = str(end) if end < len(type(self).records) else None
        self._send(200, json.dumps({"records": page, "next_cursor": nxt}).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # the client gives up on a slow answer, as it should
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Api.records = [tap(i) for i in range(7)]
    _Api.script = []
    _Api.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/transit"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_real_server_pages_retries_and_times_out(server: str) -> None:
    _Api.script = ["503", "slow"]
    sleeps: list[float] = []
    http = HttpTransport(
        url=server, page_size=3, token=TOKEN, timeout_s=0.2, backoff_s=0.01, sleep=sleeps.append
    )
    pull = http.pull(connector_for("transit"), watermark=None)
    got = collect(pull)
    assert got.rows["record_id"].tolist() == [f"t{i}" for i in range(7)]
    assert got.rows["tapped_at"].iloc[0] == pd.Timestamp("2025-01-01 00:00", tz="UTC")
    assert pull.watermark == "6"
    assert sleeps == [0.01, 0.02]  # the 503, then the time-out
    assert len(_Api.seen) == 5  # 503, slow, then three pages
    assert all(auth == f"Bearer {TOKEN}" for _, auth in _Api.seen)


def test_real_server_refusal_is_fatal(server: str) -> None:
    http = HttpTransport(url=server, token="wrong", sleep=_no_sleep)
    with pytest.raises(FatalError, match="HTTP 401"):
        list(http.pull(connector_for("transit"), watermark=None).batches)
    assert len(_Api.seen) == 1


def test_unreachable_server_is_retriable() -> None:
    sleeps: list[float] = []
    http = HttpTransport(url="http://127.0.0.1:1/x", max_retries=1, sleep=sleeps.append)
    with pytest.raises(RetriableError, match="connection error"):
        list(http.pull(connector_for("transit"), watermark=None).batches)
    assert sleeps == [0.5]
