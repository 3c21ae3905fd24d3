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

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.kept import keep_table, kept_table
from models import Certification

# Where these ends are kept among the run's kept tables (`liveness.kept`).
ENDS_CACHE_ID = 3
# Bumped whenever the kept ends' columns or their meaning change: an old one is then unread.
ENDS_FORMAT = 2  # 2: Arrow IPC, no longer Parquet (`liveness.kept.encoded`)
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
    kept = kept_table(session, ENDS_CACHE_ID, format=ENDS_FORMAT, columns=["person_id", "end"])
    if kept is None:
        return None
    mark, table = kept
    metadata = table.schema.metadata or {}
    if metadata.get(_MARK_KEY, b"").decode() != certifications_mark(session, mark):
        return None
    ends = pd.Series(
        table["end"].to_numpy().astype("datetime64[D]"),
        index=table["person_id"].to_numpy().astype(np.int64),
    )
    return mark, ends


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
    keep_table(session, ENDS_CACHE_ID, format=ENDS_FORMAT, mark=mark, table=table)
