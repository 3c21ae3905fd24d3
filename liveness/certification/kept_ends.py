"""Each person's latest recorded certification end, kept between runs.

Every run needs each person's latest certification end; found by a GROUP BY over every
certification ever made, that costs a second a night at a million persons and grows by a
cycle's worth of rows a year. Only runs write certifications, never updating or deleting one,
so the run keeps the ends it arrives at (in the roll cache's table, in its own transaction)
with the highest certification id, that row's person and end, and the number of
certifications they cover; the next run adds the certifications after that id. Where the count
of certifications up to that id, or that row, is not the one kept (a row deleted by hand; on
SQLite the latest id deleted and given again to a new row), the kept ends are not trusted and
the run reads them all again: the result is what a full read returns.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from models import Certification, RollCache

# The roll cache's table holds the kept roll (1), the standing frame (2) and these ends (3).
ENDS_CACHE_ID = 3
# Bumped whenever the kept ends' columns or their meaning change: an old one is then unread.
ENDS_FORMAT = 1
_MARK_KEY = b"certifications"


def certifications_mark(session: Session, mark: int | None = None) -> str:
    """Return what identifies the certifications up to id `mark` (default: the highest id).

    Their number, and the person and end of the row at `mark`, as text.
    """
    if mark is None:
        mark = int(session.scalar(select(func.max(Certification.id))) or 0)
    count = session.scalar(select(func.count(Certification.id)).where(Certification.id <= mark))
    last = session.execute(
        select(Certification.person_id, Certification.valid_until).where(Certification.id == mark)
    ).first()
    row = "-" if last is None else f"{last.person_id}:{last.valid_until.isoformat()}"
    return f"{mark}/{int(count or 0)}/{row}"


def kept_ends(session: Session) -> tuple[int, pd.Series] | None:
    """Return the kept ends and the certification id they go up to, if they can be trusted.

    The ends are a Series of datetime64 by person id. None where none is kept, it does not
    read back, or the certifications up to its id are no longer the ones it covered.
    """
    cached = session.execute(
        select(RollCache.format, RollCache.mark, RollCache.content).where(
            RollCache.id == ENDS_CACHE_ID
        )
    ).first()
    if cached is None or cached.format != ENDS_FORMAT:
        return None
    try:
        table = pq.read_table(pa.BufferReader(cached.content))
    except (pa.ArrowInvalid, OSError):
        return None
    metadata = table.schema.metadata or {}
    if table.column_names != ["person_id", "end"] or _MARK_KEY not in metadata:
        return None
    if metadata[_MARK_KEY].decode() != certifications_mark(session, int(cached.mark)):
        return None
    ends = pd.Series(
        table["end"].to_numpy().astype("datetime64[D]"),
        index=table["person_id"].to_numpy().astype(np.int64),
    )
    return int(cached.mark), ends


def keep_ends(session: Session, recorded: pd.Series) -> None:
    """Keep `recorded` (every person's latest end now) for the next run, in this transaction."""
    identity = certifications_mark(session)
    table = pa.table(
        {
            "person_id": pa.array(recorded.index.to_numpy(dtype=np.int64)),
            "end": pa.array(recorded.to_numpy().astype("datetime64[D]"), type=pa.date32()),
        }
    ).replace_schema_metadata({_MARK_KEY: identity.encode()})
    mark = int(identity.split("/", 1)[0])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="lz4")
    values = {
        "format": ENDS_FORMAT, "mark": mark, "persons": len(recorded),
        "content": sink.getvalue(), "written_at": dt.datetime.now(dt.UTC),
    }  # fmt: skip
    try:
        with session.begin_nested():
            updated = session.execute(
                update(RollCache).where(RollCache.id == ENDS_CACHE_ID).values(**values)
            )
            if not updated.rowcount:  # type: ignore[attr-defined]
                session.execute(insert(RollCache).values(id=ENDS_CACHE_ID, **values))
    except DBAPIError:
        # Another transaction kept its ends first: keeping is a saving, never a result.
        pass
