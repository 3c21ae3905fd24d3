"""Read file deliveries (CSV, CSV.gz, Parquet, JSON Lines) into raw Arrow chunks.

This layer knows containers and encodings, not sources: it yields the delivered columns as
delivered (text for CSV and JSON Lines, typed for Parquet), the physical line of every row,
and the rows whose structure is broken. ``connectors.base`` maps and normalises them.

Line numbers: the header is line 1. For CSV a record's line is where it starts, counting the
newlines embedded in quoted fields of earlier records. For Parquet the line is row number + 1
(as if a header preceded the rows).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from connectors.errors import UndecodableFile, UnreadableFile
from connectors.threads import read_ahead

__all__ = ["RawChunk", "RawDelivery", "check_encoding", "infer_format", "open_delivery"]

_SUFFIXES = (
    (".csv.gz", "csv.gz"),
    (".csv", "csv"),
    (".parquet", "parquet"),
    (".pq", "parquet"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".jsonl.gz", "jsonl.gz"),
)
_FORMATS = ("csv", "csv.gz", "parquet", "jsonl", "jsonl.gz")
_CHUNK = 8 << 20
# Arrow's streaming CSV reader reads up to 32 blocks ahead of its parser: small blocks keep
# that bounded (32 x 2 MiB) whatever the file's size; the parsed pieces are merged into chunks.
_CSV_BLOCK = 2 << 20
# Rows per chunk at most: a few chunks in flight (one normalised, one parsed ahead) then cost a
# bounded few hundred MB, and a file of a million rows already streams like a larger one.
CHUNK_ROWS = 1 << 18
# Buffered Parquet column reads: without a buffer the reader's memory grows with the file.
_PARQUET_BUFFER = 8 << 20


@dataclass
class RawChunk:
    """Hold one slice of a delivery before mapping: rows as delivered plus broken rows."""

    table: pa.Table
    lines: np.ndarray
    raw_text: Callable[[np.ndarray], list[str]]
    bad_lines: list[int] = field(default_factory=list)
    bad_raw: list[str] = field(default_factory=list)
    bad_reasons: list[str] = field(default_factory=list)


@dataclass
class RawDelivery:
    """Hold an opened delivery: its delivered column names and an iterator of chunks."""

    path: Path
    format: str
    columns: list[str]
    chunks: Iterator[RawChunk]


def infer_format(path: Path) -> str:
    """Return the container format named by the file's suffix."""
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return fmt
    raise UnreadableFile(
        f"{path}: cannot tell the format from the file name; expected one of "
        f"{', '.join(s for s, _ in _SUFFIXES)} (or configure `format`)",
        path=path,
    )


def check_encoding(path: Path, *, encoding: str, compression: str | None = None) -> None:
    """Decode the whole file once and raise UndecodableFile at the first bad byte."""
    offset = 0
    carry = b""
    try:
        with pa.input_stream(str(path), compression=compression) as stream:
            while True:
                block = stream.read(_CHUNK)
                data = carry + block
                if not data:
                    return
                try:
                    _decode_check(data, encoding)
                    carry = b""
                except UnicodeDecodeError as exc:
                    # a character cut by the block boundary is finished by the next block
                    at_end = exc.end >= len(data) and len(data) - exc.start < 4
                    if not (block and at_end):
                        raise UndecodableFile(
                            path,
                            encoding=encoding,
                            offset=offset + exc.start,
                            detail=f"{exc.reason}: {data[exc.start : exc.start + 4]!r}",
                        ) from None
                    carry = data[exc.start :]
                    data = data[: exc.start]
                offset += len(data)
                if not block:
                    return
    except (OSError, pa.ArrowException, EOFError) as exc:
        raise UnreadableFile(
            f"{path}: cannot read ({compression or 'plain'}): {exc}", path=path
        ) from None


def _decode_check(data: bytes, encoding: str) -> None:
    """Raise UnicodeDecodeError where ``data`` does not decode, as ``data.decode`` would."""
    if encoding.startswith("utf-8"):
        # Arrow validates UTF-8 several times faster than decoding it; the last character,
        # possibly cut by the block boundary, is left to Python for the exact error.
        cut = len(data)
        while cut > 0 and len(data) - cut < 3 and data[cut - 1] & 0xC0 == 0x80:
            cut -= 1
        if cut > 0 and data[cut - 1] >= 0xC0:
            cut -= 1
        if _valid_utf8(memoryview(data)[:cut]):
            try:
                data[cut:].decode(encoding)
            except UnicodeDecodeError as exc:
                raise UnicodeDecodeError(
                    exc.encoding, data, exc.start + cut, exc.end + cut, exc.reason
                ) from None
            return
    data.decode(encoding)


def _valid_utf8(data: memoryview) -> bool:
    offsets = pa.array([0, len(data)], pa.int32()).buffers()[1]
    try:
        pa.StringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def open_delivery(path: Path, *, format: str | None, encoding: str, batch_rows: int) -> RawDelivery:
    """Open a delivery: check its encoding whole, read its header, return its chunk iterator."""
    fmt = format or infer_format(path)
    if fmt not in _FORMATS:
        raise UnreadableFile(f"{path}: unknown format {fmt!r}", path=path)
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file", path=path)
    if fmt == "parquet":
        return _open_parquet(path, batch_rows)
    compression = "gzip" if fmt.endswith(".gz") else None
    # refusing a file whole means checking it before the first batch leaves
    check_encoding(path, encoding=encoding, compression=compression)
    if fmt.startswith("csv"):
        return _open_csv(path, fmt, encoding, compression, batch_rows)
    return _open_jsonl(path, fmt, encoding, compression, batch_rows)


# ---------------------------------------------------------------------------------- CSV


def _csv_text(fields: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(["" if v is None else v for v in fields])
    return out.getvalue()


def _table_raw_text(table: pa.Table) -> Callable[[np.ndarray], list[str]]:
    def raw(positions: np.ndarray) -> list[str]:
        rows = table.take(pa.array(positions, pa.int64())).to_pylist()
        return [_csv_text(list(r.values())) for r in rows]

    return raw


def _csv_options(
    encoding: str, batch_rows: int, handler: Callable[[Any], str] | None
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions]:
    # pyarrow skips a UTF-8 BOM itself; other encodings are transcoded to UTF-8 while reading
    arrow_encoding = "utf8" if encoding.startswith("utf-8") else encoding
    read = pacsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK, encoding=arrow_encoding)
    parse = pacsv.ParseOptions(
        newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=handler
    )
    return read, parse


def _open_csv(
    path: Path, fmt: str, encoding: str, compression: str | None, batch_rows: int
) -> RawDelivery:
    invalid: list[tuple[int, str, str]] = []

    def on_invalid(row: Any) -> str:
        if row.number is None:  # only known single-threaded, which is how we read
            raise UnreadableFile(f"{path}: cannot locate a malformed row", path=path)
        reason = (
            f"wrong number of fields: expected {row.expected_columns}, found {row.actual_columns}"
        )
        invalid.append((int(row.number), row.text, reason))
        return "skip"

    read, parse = _csv_options(encoding, batch_rows, on_invalid)
    try:
        with pa.input_stream(str(path), compression=compression) as probe_stream:
            # the probe reads only the first block, to learn the header
            probe = pacsv.ReadOptions(use_threads=False, block_size=1 << 20, encoding=read.encoding)
            reader = pacsv.open_csv(probe_stream, read_options=probe, parse_options=parse)
            names = reader.schema.names
    except pa.ArrowInvalid as exc:
        raise UnreadableFile(
            f"{path}: not a readable CSV file with a header: {exc}", path=path
        ) from None
    invalid.clear()
    clean = [n.strip().lstrip("\ufeff") for n in names]
    dupes = sorted({n for n in clean if clean.count(n) > 1})
    if dupes:
        raise UnreadableFile(
            f"{path}: duplicate column name(s) in header: {', '.join(dupes)}", path=path
        )
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
    header_newlines = sum(n.count("\n") for n in names)
    pieces = _csv_chunks(path, compression, read, parse, convert, invalid, clean, header_newlines)
    # parsing the next chunk on a thread overlaps Arrow's parser with the caller's normalisation
    return RawDelivery(
        path,
        fmt,
        clean,
        read_ahead(merged(pieces, min(batch_rows, CHUNK_ROWS)), name="delivery-reader"),
    )


def merged(pieces: Iterator[RawChunk], rows: int) -> Generator[RawChunk, None, None]:
    """Merge consecutive pieces into chunks of at most ``rows`` rows (a larger piece stays one)."""
    pending: list[RawChunk] = []
    count = 0
    for piece in pieces:
        if pending and count + piece.table.num_rows > rows:
            yield _merge(pending)
            pending, count = [], 0
        pending.append(piece)
        count += piece.table.num_rows
    if pending:
        yield _merge(pending)


def _merge(pieces: list[RawChunk]) -> RawChunk:
    if len(pieces) == 1:
        return pieces[0]
    table = pa.concat_tables([p.table for p in pieces])
    return RawChunk(
        table,
        np.concatenate([p.lines for p in pieces]),
        _table_raw_text(table),
        bad_lines=[line for p in pieces for line in p.bad_lines],
        bad_raw=[raw for p in pieces for raw in p.bad_raw],
        bad_reasons=[reason for p in pieces for reason in p.bad_reasons],
    )


def _csv_chunks(
    path: Path,
    compression: str | None,
    read: pacsv.ReadOptions,
    parse: pacsv.ParseOptions,
    convert: pacsv.ConvertOptions,
    invalid: list[tuple[int, str, str]],
    names: list[str],
    header_newlines: int,
) -> Iterator[RawChunk]:
    next_record = 2  # record 1 is the header (pyarrow numbers records from 1)
    carry = header_newlines
    used = 0
    with pa.input_stream(str(path), compression=compression) as stream:
        try:
            reader = pacsv.open_csv(
                stream, read_options=read, parse_options=parse, convert_options=convert
            )
            batches: Iterator[pa.RecordBatch] = iter(reader)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    batch = None
                # a batch of n good rows spans n records plus the malformed ones among them
                end = next_record + (batch.num_rows if batch is not None else 0)
                bad = []
                while used < len(invalid) and (batch is None or invalid[used][0] < end):
                    bad.append(invalid[used])
                    if batch is not None:
                        end += 1
                    used += 1
                if batch is None and not bad:
                    return
                table = pa.Table.from_batches([batch]) if batch is not None else None
                bad_numbers = np.array([b[0] for b in bad], dtype=np.int64)
                records = (
                    np.arange(next_record, end, dtype=np.int64)
                    if batch is not None
                    else bad_numbers
                )
                is_bad = np.isin(records, bad_numbers)
                embedded = np.zeros(len(records), dtype=np.int64)
                embedded[is_bad] = [b[1].count("\n") for b in bad]
                if table is not None and table.num_rows:
                    embedded[~is_bad] = _embedded_newlines(table)
                lines = records + carry + np.cumsum(embedded) - embedded
                carry += int(embedded.sum())
                next_record = int(records[-1]) + 1 if len(records) else next_record
                if table is None:
                    table = pa.table({n: pa.array([], pa.string()) for n in names})
                else:
                    table = table.rename_columns(names)
                good_lines = lines[~is_bad]
                # a blank line parses as a row of empty fields: it is not a record, skip it
                blank = _all_empty(table)
                if blank.any():
                    keep = np.flatnonzero(~blank)
                    table = table.take(pa.array(keep))
                    good_lines = good_lines[keep]
                yield RawChunk(
                    table,
                    good_lines,
                    _table_raw_text(table),
                    bad_lines=[int(x) for x in lines[is_bad]],
                    bad_raw=[b[1] for b in bad],
                    bad_reasons=[b[2] for b in bad],
                )
        except (pa.ArrowInvalid, OSError) as exc:
            raise UnreadableFile(f"{path}: CSV cannot be parsed: {exc}", path=path) from None


def _embedded_newlines(table: pa.Table) -> np.ndarray:
    total = np.zeros(table.num_rows, dtype=np.int64)
    for col in table.columns:
        # scanning the raw bytes for a newline is far cheaper than counting them per value
        if not any(_has_newline(chunk) for chunk in col.chunks):
            continue
        counts = pc.fill_null(pc.count_substring(col, "\n"), 0)
        total += counts.to_numpy().astype(np.int64)
    return total


def _has_newline(values: pa.Array) -> bool:
    data = values.buffers()[2]
    return data is not None and bool((np.frombuffer(data, dtype=np.uint8) == 10).any())


def _all_empty(table: pa.Table) -> np.ndarray:
    if table.num_columns == 0:
        return np.ones(table.num_rows, dtype=bool)
    # only rows whose first field is empty can be blank: test the other columns on those few
    first = pc.fill_null(pc.equal(pc.utf8_length(table.column(0)), 0), True).to_numpy()
    candidates = np.flatnonzero(first)
    if not candidates.size:
        return first
    rest = table.take(pa.array(candidates))
    blank = np.ones(len(candidates), dtype=bool)
    for col in rest.columns[1:]:
        blank &= pc.fill_null(pc.equal(pc.utf8_length(col), 0), True).to_numpy()
    out = np.zeros(table.num_rows, dtype=bool)
    out[candidates[blank]] = True
    return out


# ---------------------------------------------------------------------------- JSON Lines


def value_text(value: Any) -> str | None:
    """Return one value as the text a file would carry (None for NULL).

    JSON Lines values, and those of a database or an API (connectors.transport), alike.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.hex()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(value)


def _open_jsonl(
    path: Path, fmt: str, encoding: str, compression: str | None, batch_rows: int
) -> RawDelivery:
    # JSON Lines is the slow path: json.loads per line (Arrow's JSON reader infers timestamps
    # and drops their offsets, and fails the whole block on one bad line).
    chunks = _jsonl_chunks(path, encoding, compression, batch_rows)
    first = next(chunks, None)
    columns = list(first.table.column_names) if first is not None else []

    def all_chunks() -> Iterator[RawChunk]:
        if first is not None:
            yield first
        yield from chunks

    return RawDelivery(path, fmt, columns, all_chunks())


def _jsonl_chunks(
    path: Path, encoding: str, compression: str | None, batch_rows: int
) -> Iterator[RawChunk]:
    line_no = 0
    pending = b""
    first = True
    with pa.input_stream(str(path), compression=compression) as stream:
        while True:
            block = stream.read(_CHUNK)
            data = pending + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            pending, data = data[cut:], data[:cut]
            text = data.decode(encoding)
            if first:
                text = text.removeprefix("\ufeff")
                first = False
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            for start in range(0, len(lines), batch_rows):
                part = lines[start : start + batch_rows]
                yield _jsonl_chunk(part, line_no + start + 1)
            line_no += len(lines)
            if not block:
                return


def _jsonl_chunk(lines: list[str], first_line: int) -> RawChunk:
    columns: dict[str, list[str | None]] = {}
    kept: list[str] = []
    good_lines: list[int] = []
    chunk = RawChunk(pa.table({}), np.zeros(0, np.int64), lambda p: [])
    for i, line in enumerate(lines):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            chunk.bad_lines.append(first_line + i)
            chunk.bad_raw.append(line)
            chunk.bad_reasons.append(f"not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            chunk.bad_lines.append(first_line + i)
            chunk.bad_raw.append(line)
            chunk.bad_reasons.append("not a JSON object")
            continue
        n = len(kept)
        for key, value in obj.items():
            col = columns.get(key)
            if col is None:
                col = columns[key] = [None] * n
            col.append(value_text(value))
        kept.append(line)
        good_lines.append(first_line + i)
        for col in columns.values():
            if len(col) == n:
                col.append(None)
    chunk.table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    chunk.lines = np.array(good_lines, dtype=np.int64)
    chunk.raw_text = lambda positions: [kept[int(p)] for p in positions]
    return chunk


# ------------------------------------------------------------------------------- Parquet


def _open_parquet(path: Path, batch_rows: int) -> RawDelivery:
    try:
        pf = pq.ParquetFile(str(path), buffer_size=_PARQUET_BUFFER, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableFile(f"{path}: not a readable Parquet file: {exc}", path=path) from None

    def chunks() -> Generator[RawChunk, None, None]:
        start = 0
        try:
            for batch in pf.iter_batches(batch_size=min(batch_rows, CHUNK_ROWS)):
                table = pa.Table.from_batches([batch])
                lines = np.arange(start + 2, start + 2 + table.num_rows, dtype=np.int64)
                start += table.num_rows

                def raw(positions: np.ndarray, table: pa.Table = table) -> list[str]:
                    rows = table.take(pa.array(positions, pa.int64())).to_pylist()
                    return [json.dumps(r, ensure_ascii=False, default=str) for r in rows]

                yield RawChunk(table, lines, raw)
        except (pa.ArrowException, OSError) as exc:
            raise UnreadableFile(f"{path}: Parquet cannot be read: {exc}", path=path) from None

    return RawDelivery(path, "parquet", list(pf.schema_arrow.names), chunks())
