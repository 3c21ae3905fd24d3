"""CSV export of a page's table: `?format=csv` on the page's own address.

A page that offers it builds its rows with the same filters and scope as the page, all of
them rather than one page, audits the export, and answers `csv_response(...)`. Every other
table of the pages (`<table data-table="name">`, linked by `table_href`) is exported as shown:
`?format=csv&table=name` renders the page and answers that table's cells (`table_rows`). The file is
UTF-8 with a byte-order mark (Excel then reads Chinese right), named after the table and the
day, and no cell can run as a spreadsheet formula.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import StreamingResponse

BOM = "\ufeff"
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 500  # rows encoded per chunk of the stream
# Pages hold personal data: the file is never cached either (see api.web.pages).
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def wants_csv(request: Request) -> bool:
    """Return whether the request asks for the page's table as CSV (`?format=csv`)."""
    return request.query_params.get("format") == "csv"


def csv_href(request: Request) -> str:
    """Return the page's own address (same filters, no page number) asking for CSV."""
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page", "format")]
    return request.url.path + "?" + urlencode([*query, ("format", "csv")])


def csv_cell(value: object) -> str:
    """Return a value as a CSV cell: empty for None, text neutralised against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float | Decimal):
        return str(value)  # a number is data, whatever its sign
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value)
    # A leading apostrophe makes the spreadsheet show the text as text, never evaluate it.
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _lines(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[str]:
    """Yield the CSV text in chunks: the BOM and header first, then the rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(BOM)
    writer.writerow([csv_cell(c) for c in columns])
    for count, row in enumerate(rows, start=1):
        writer.writerow([csv_cell(value) for value in row])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(
    *, name: str, day: dt.date, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> StreamingResponse:
    """Answer a table as a streamed CSV download named `<name>-<day>.csv`.

    `rows` must not need the request's database session (it ends before the stream runs):
    give a list, or anything holding its own data.
    """
    filename = f"{name}-{day.isoformat()}.csv"
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in _lines(columns, rows)),
        media_type="text/csv; charset=utf-8",
        headers={**HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'},
    )


class _TableText(HTMLParser):
    """Collect the text of the cells of one `<table data-table="...">`, row by row."""

    def __init__(self, table: str) -> None:
        super().__init__(convert_charrefs=True)
        self.wanted = table
        self.depth = 0  # tables open inside the wanted one (0: outside it)
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.skip = 0  # inside an element whose text is not the cell's (a chart, a form)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            if self.depth or dict(attrs).get("data-table") == self.wanted:
                self.depth += 1
        elif not self.depth:
            return
        elif tag in ("svg", "form", "script", "style"):
            self.skip += 1
        elif tag == "tr" and self.depth == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self.depth == 1:
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "table":
            self.depth -= 1
        elif tag in ("svg", "form", "script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in ("td", "th") and self.cell is not None and self.depth == 1:
            if self.rows:
                self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None and not self.skip:
            self.cell.append(data)


def table_rows(html: str, table: str) -> list[list[str]] | None:
    """Return the rows of the page's `<table data-table="table">` as text, None if absent."""
    parser = _TableText(table)
    parser.feed(html)
    parser.close()
    rows = [row for row in parser.rows if row]
    return rows or None


def table_href(request: Request, table: str) -> str:
    """Return the page's own address asking for one of its tables as CSV."""
    query = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in ("page", "format", "table")
    ]
    return request.url.path + "?" + urlencode([*query, ("format", "csv"), ("table", table)])
