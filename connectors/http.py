"""Read a source from a paged JSON API with a cursor, through httpx.

Protocol: ``GET url?cursor=<c>&limit=<n>`` (the cursor omitted on a first pull) answers
``{"records": [{...}, ...], "next_cursor": "..." | null}``; the parameter and key names are
configurable. Pages are followed until ``next_cursor`` is null or a page is empty. Each page
becomes one raw chunk, so one batch.

Watermark: after a page is handed over, the watermark is that page's ``next_cursor`` — where
the next pull resumes. On the last page (``next_cursor`` null) or an empty page it is the cursor
that requested that page, so the next pull asks for that page again and sees what was appended
to it; re-delivered records are dropped by the domain. A first pull that ends on its first
page leaves the watermark None: such an API offers no resume point, so every pull reads it all.

Failures: time-outs, connection errors, 5xx, 408 and 429 are retried up to ``max_retries``
times after ``backoff_s * 2**attempt`` seconds (no jitter: one client per source and night
gives no herd to spread), then raise ``RetriableError``; any other 4xx raises ``FatalError`` at
once. The bearer token is sent only as a header and never appears in an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

from connectors.base import Connector
from connectors.errors import FatalError, RetriableError
from connectors.files import RawChunk
from connectors.transport import (
    Page,
    PagedTransport,
    check_delivered_columns,
    rows_chunk,
    text_column,
)

__all__ = ["HttpTransport"]

_EXCERPT = 200
# 408 and 429 are the server asking to come back later, not a mistake in the request
_RETRY_STATUS = frozenset({408, 429})


class HttpTransport(PagedTransport):
    """Pull a source's records from a paged JSON API, following its cursor (after the watermark)."""

    def __init__(
        self,
        *,
        url: str,
        page_size: int = 1000,
        cursor_param: str = "cursor",
        limit_param: str = "limit",
        records_key: str = "records",
        next_cursor_key: str = "next_cursor",
        token: str | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.url = url
        self.page_size = page_size
        self.batch_rows = page_size  # a page is one chunk, so one batch
        self.cursor_param = cursor_param
        self.limit_param = limit_param
        self.records_key = records_key
        self.next_cursor_key = next_cursor_key
        self._token = token
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.client = client
        self.sleep = sleep
        self.origin = f"http:{_shown(httpx.URL(url))}"

    def __repr__(self) -> str:
        # the token stays out of reprs, so out of logs and tracebacks
        return f"HttpTransport(url={self.url!r}, token={'***' if self._token else None})"

    def _pages(self, connector: Connector, watermark: str | None) -> Iterator[Page]:
        # trust_env off: proxies and certificates come from an injected client, not from env
        client = self.client or httpx.Client(trust_env=False)
        try:
            cursor = watermark
            line = 1
            checked = False
            while True:
                records, next_cursor = self._page(client, cursor)
                if not records:
                    return
                chunk = _records_chunk(records, first_line=line)
                # like a JSON Lines file, the first page with rows tells the delivered columns
                if not checked and chunk.table.num_rows:
                    check_delivered_columns(
                        connector, origin=self.origin, columns=chunk.table.column_names
                    )
                    checked = True
                line += len(records)
                if next_cursor is None:
                    yield chunk, cursor
                    return
                if next_cursor == cursor:
                    raise FatalError(
                        f"{self.next_cursor_key} {next_cursor!r} repeats the cursor that "
                        "requested the page; following it would loop",
                        origin=self.origin,
                    )
                yield chunk, next_cursor
                cursor = next_cursor
        finally:
            if self.client is None:
                client.close()

    def _page(self, client: httpx.Client, cursor: str | None) -> tuple[list[Any], str | None]:
        """Fetch one page, retrying transient failures; return its records and next cursor."""
        params: dict[str, str | int] = {self.limit_param: self.page_size}
        if cursor is not None:
            params[self.cursor_param] = cursor
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = client.build_request(
            "GET", self.url, params=params, headers=headers, timeout=self.timeout_s
        )
        shown = _shown(request.url)
        for attempt in range(self.max_retries + 1):
            try:
                response = client.send(request)
            except httpx.TimeoutException as exc:
                problem = f"time-out ({type(exc).__name__})"
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                problem = f"connection error ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                # an unsupported scheme, a malformed request: retrying cannot help
                raise FatalError(
                    f"GET {shown} failed: {type(exc).__name__}", origin=self.origin
                ) from None
            else:
                status = response.status_code
                if status < 400:
                    return self._parse(response, shown)
                if status < 500 and status not in _RETRY_STATUS:
                    raise FatalError(
                        f"GET {shown} answered HTTP {status}: {self._excerpt(response)}",
                        origin=self.origin,
                    )
                problem = f"HTTP {status}"
            if attempt < self.max_retries:
                self.sleep(self.backoff_s * 2**attempt)
        raise RetriableError(
            f"GET {shown} failed after {self.max_retries + 1} attempt(s); last: {problem}",
            origin=self.origin,
        )

    def _parse(self, response: httpx.Response, shown: str) -> tuple[list[Any], str | None]:
        try:
            body = response.json()
        except ValueError:
            raise FatalError(
                f"GET {shown} did not answer JSON: {self._excerpt(response)}", origin=self.origin
            ) from None
        records = body.get(self.records_key) if isinstance(body, Mapping) else None
        if not isinstance(records, list):
            raise FatalError(
                f"GET {shown} answered without a {self.records_key!r} list: "
                f"{self._excerpt(response)}",
                origin=self.origin,
            )
        next_cursor = body.get(self.next_cursor_key)
        if next_cursor is not None and not isinstance(next_cursor, str | int):
            raise FatalError(
                f"GET {shown}: {self.next_cursor_key!r} must be a string or null",
                origin=self.origin,
            )
        return records, None if next_cursor is None else str(next_cursor)

    def _excerpt(self, response: httpx.Response) -> str:
        text = " ".join(response.text.split())
        if self._token:
            text = text.replace(self._token, "***")
        return repr(text[:_EXCERPT] + ("…" if len(text) > _EXCERPT else ""))


def _records_chunk(records: list[Any], *, first_line: int) -> RawChunk:
    """Build a raw chunk from a page of JSON objects; anything else is quarantined."""
    is_object = np.fromiter((isinstance(r, dict) and bool(r) for r in records), bool, len(records))
    objects = (
        records if is_object.all() else [r for r, ok in zip(records, is_object, strict=True) if ok]
    )
    columns: dict[str, pa.Array] = {}
    if objects:
        try:
            # Arrow infers one struct over every object's keys; absent keys become null
            struct = pa.array(objects)
            columns = {
                struct.type.field(i).name: text_column(struct.field(i))
                for i in range(struct.type.num_fields)
            }
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            # conflicting types for one key across records: text each key's values one by one
            names = list(dict.fromkeys(k for r in objects for k in r))
            columns = {k: text_column([r.get(k) for r in objects]) for k in names}
    good = np.flatnonzero(is_object)

    def raw(positions: np.ndarray) -> list[str]:
        return [_compact(objects[int(p)]) for p in positions]

    chunk = rows_chunk(columns, first_line=first_line, raw=raw)
    chunk.lines = (first_line + good).astype(np.int64)
    for p in np.flatnonzero(~is_object):
        chunk.bad_lines.append(first_line + int(p))
        chunk.bad_raw.append(_compact(records[int(p)]))
        chunk.bad_reasons.append(
            "empty JSON object" if isinstance(records[int(p)], dict) else "not a JSON object"
        )
    return chunk


def _shown(url: httpx.URL) -> str:
    """Return a URL fit for messages: credentials in it are dropped."""
    return str(url.copy_with(userinfo=b"")) if url.userinfo else str(url)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
