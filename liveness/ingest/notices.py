"""Death notices pushed (or pulled) from a civil registry: stored as death records, acknowledged.

Each notice is an OpenCRVS-style event on one registry record: `registered`, `corrected`
(rewrites the record in place) or `voided` (withdraws it). They go through the same store
path as delivered death files (`load_death_frame`), under source `registry_notice` with the
registry's record id, and match by positive identification (`match_death_notices`): only a
positively identified notice acts as a death (the next run suspends); one that names someone
less surely opens a death review; one that names nobody is kept.

A date of death known to the month (`YYYY-MM`) or year (`YYYY`) only is stored as the last day
of that month or year, or the day it was registered if earlier (`died_on_precision` says
which): the latest day the person may have been alive. The overpayment (payments after the
month of death) then never claims money paid while the person may have been alive, and the
suspension runs from the day after that day.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.identity import normalise_id_numbers
from liveness.access.signatures import SignatureRefused
from liveness.errors import InputInvalid
from liveness.identity import RollIndex
from liveness.identity.linking import NOTICE_SOURCE, match_death_notices
from liveness.ingest.deaths import load_death_frame
from models import DatePrecision, DeathMatch, DeathNotification, DeathRecord, RecordStatus

__all__ = [
    "EVENT_TYPES",
    "NOTICE_SOURCE",
    "DeathNotice",
    "NoticeAck",
    "NoticeReplayed",
    "conservative_death_day",
    "death_notices",
    "receive_death_notices",
    "receive_notify_message",
]

EVENT_TYPES = ("registered", "corrected", "voided")
PARTIAL_DATE = re.compile(r"(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")


class NoticeInvalid(InputInvalid):
    """A notice that cannot be taken as it is, named by its field: refused whole, and audited."""

    audit_refusal = True


class NoticeReplayed(SignatureRefused):
    """A message id received before with other content: a replay, refused (and audited)."""


@dataclass(frozen=True)
class DeathNotice:
    """One registry event about one death registration (OpenCRVS-style)."""

    event: str  # registered | corrected | voided
    record_id: str  # the registry's id of the registration
    died_on: str  # YYYY-MM-DD, or YYYY-MM / YYYY when only the month or year is known
    registered_on: dt.date
    name: str | None = None
    id_number: str | None = None
    sex: str | None = None  # M or F
    birth_date: dt.date | None = None
    region_code: str | None = None  # the deceased's address region (6 digits)


@dataclass(frozen=True)
class NoticeAck:
    """What became of one notice: its match outcome and what happens next."""

    record_id: str
    event: str
    status: str  # accepted | duplicate | conflict
    outcome: str  # matched | ambiguous | unknown | withdrawn
    next: str
    died_on: str | None = None
    died_on_precision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the acknowledgement as a JSON-able dict."""
        return asdict(self)


def conservative_death_day(text: str, *, registered_on: dt.date) -> tuple[dt.date, DatePrecision]:
    """Return the latest day a (partial) date of death allows, and how precise the date is.

    `2025-03` gives 2025-03-31, `2025` gives 2025-12-31, either capped at the registration
    day (nobody is registered dead before dying). A full date is itself. A date whose first
    possible day is after the registration is refused.
    """
    found = PARTIAL_DATE.fullmatch(text.strip())
    if found is None:
        raise NoticeInvalid(f"died_on: {text!r} is not YYYY-MM-DD, YYYY-MM or YYYY")
    year, month, day = (None if part is None else int(part) for part in found.groups())
    assert year is not None
    try:
        if month is None:
            first, latest, precision = (
                dt.date(year, 1, 1), dt.date(year, 12, 31), DatePrecision.YEAR,
            )  # fmt: skip
        elif day is None:
            first = dt.date(year, month, 1)
            latest = dt.date(year, month, calendar.monthrange(year, month)[1])
            precision = DatePrecision.MONTH
        else:
            first = latest = dt.date(year, month, day)
            precision = DatePrecision.DAY
    except ValueError:
        raise NoticeInvalid(f"died_on: {text!r} is not a date") from None
    if first > registered_on:
        raise NoticeInvalid(f"died_on: {text} is after the death's registration ({registered_on})")
    return min(latest, registered_on), precision


def _death_day(notice: DeathNotice) -> tuple[dt.date, DatePrecision]:
    """Return a notice's conservative day of death; a refusal names its record."""
    try:
        return conservative_death_day(notice.died_on, registered_on=notice.registered_on)
    except NoticeInvalid as error:
        raise NoticeInvalid(f"{error} (record {notice.record_id})") from None


def _check_days(
    notice: DeathNotice, died_on: dt.date, *, earliest: dt.date | None, today: dt.date | None
) -> None:
    """Refuse a notice registered after today, or dying before its birth or the earliest date."""
    # The checks a delivered file's rows get from their contract (connectors.base), for a
    # pushed notice: a death dated 1800 would claim a lifetime of payments back.
    record = notice.record_id
    if today is not None and notice.registered_on > today:
        raise NoticeInvalid(
            f"registered_on: {notice.registered_on} (record {record}) is after today ({today})"
        )
    if earliest is not None and died_on < earliest:
        raise NoticeInvalid(f"died_on: {notice.died_on} (record {record}) is before {earliest}")
    if notice.birth_date is not None and died_on < notice.birth_date:
        raise NoticeInvalid(
            f"died_on: {notice.died_on} (record {record}) is before the birth_date "
            f"({notice.birth_date})"
        )


_NEXT = {
    "matched": "suspended from the day after death at the next run (a second source must"
    " confirm within the policy's days, or a death review opens)",
    "ambiguous": "a death review opens at the next run; nobody is suspended on this notice",
    "ambiguous_several": "several persons match: kept for an operator (liveness unmatched);"
    " nobody is suspended or asked",
    "unknown": "kept; it matches nobody on the roll (matched again when the roll changes)",
    "withdrawn": "withdrawn: the next run reinstates with back pay any suspension it caused",
    "conflict": "refused: the registry record was stored with other content; send a"
    " `corrected` event",
}


def _frame(
    notices: Sequence[DeathNotice], *, earliest: dt.date | None = None, today: dt.date | None = None
) -> pd.DataFrame:
    """Return notices in the shape of delivered death records, their days checked."""
    for notice in notices:
        if notice.event not in EVENT_TYPES:
            raise NoticeInvalid(f"event: {notice.event!r} is not one of {', '.join(EVENT_TYPES)}")
        if not notice.record_id or len(notice.record_id) > 64:
            raise NoticeInvalid("record_id: 1 to 64 characters")
    days = [_death_day(notice) for notice in notices]
    for notice, (day, _) in zip(notices, days, strict=True):
        _check_days(notice, day, earliest=earliest, today=today)
    numbers, statuses = normalise_id_numbers(
        pd.Series([n.id_number for n in notices], dtype=object)
    )
    events = np.array([n.event for n in notices], dtype=object)
    return pd.DataFrame(
        {
            "record_id": pd.Series([n.record_id for n in notices], dtype=object),
            "id_number": numbers.astype(object).where(numbers.notna(), None),
            "id_number_status": statuses.astype(object),
            "name": pd.Series([n.name for n in notices], dtype=object),
            "sex": pd.Series([n.sex for n in notices], dtype=object),
            "birth_date": pd.Series([n.birth_date for n in notices], dtype=object),
            "region_code": pd.Series([n.region_code for n in notices], dtype=object),
            "died_on": pd.Series([day for day, _ in days], dtype=object),
            "died_on_precision": pd.Series([str(p) for _, p in days], dtype=object),
            "recorded_on": pd.Series([n.registered_on for n in notices], dtype=object),
            "correction": events != "registered",
            "voided": events == "voided",
        }
    )


def death_notices(rows: pd.DataFrame) -> list[DeathNotice]:
    """Return the notices of a pulled or delivered batch (`registry_notice` rows, normalised)."""

    def text(name: str) -> list[Any]:
        if name not in rows:
            return [None] * len(rows)
        values = rows[name].astype(object)
        return values.where(values.notna(), None).tolist()

    def day(name: str) -> list[dt.date | None]:
        if name not in rows:
            return [None] * len(rows)
        return [None if pd.isna(v) else v.date() for v in pd.to_datetime(rows[name])]

    columns = {
        "event": text("event"), "record_id": text("record_id"), "died_on": text("died_on"),
        "registered_on": day("registered_on"), "name": text("name"),
        "id_number": text("id_number"), "sex": text("sex"), "birth_date": day("birth_date"),
        "region_code": text("region_code"),
    }  # fmt: skip
    return [
        DeathNotice(**dict(zip(columns, values, strict=True)))
        for values in zip(*columns.values(), strict=True)
    ]


def receive_death_notices(
    session: Session, *, notices: Sequence[DeathNotice], demographic_confidence: float,
    roll: RollIndex | None = None, delivery_id: int | None = None,
    earliest: dt.date | None = None, today: dt.date | None = None,
) -> list[NoticeAck]:  # fmt: skip
    """Store a registry's death notices as death records; acknowledge each with its outcome.

    In order, as a delivered file's rows: `registered` again with the same content is a
    `duplicate` (answered with the record's outcome; nothing changes), with other content a
    `conflict` (nothing changes); `corrected` rewrites the record, `voided` withdraws it.
    `roll`: the roll index where the caller holds one (a pull's ingest context), else the
    candidates of these notices are read. `delivery_id`: the pull or file the notices came
    in (none for a pushed message). `earliest` (the sources' earliest date) and `today` (the
    agency's) bound a pushed notice's days, as a delivered file's contract bounds its rows.
    Flushes, never commits.
    """
    if not notices:
        return []
    frame = _frame(notices, earliest=earliest, today=today)
    if roll is None:
        roll = RollIndex.candidates(
            session, id_numbers=[n for n in frame["id_number"] if isinstance(n, str)],
            names=[n for n in frame["name"] if isinstance(n, str)],
        )  # fmt: skip
    index = roll
    loaded = load_death_frame(
        session, source=NOTICE_SOURCE, frame=frame, roll=index, delivery_id=delivery_id,
        demographic_confidence=demographic_confidence,
        matcher=lambda records: match_death_notices(
            session, records, index, demographic_confidence=demographic_confidence
        ),
    )  # fmt: skip
    conflicts = {row for row, _, _ in loaded.conflicts}
    duplicates = set(loaded.redelivered_rows)
    stored = {
        row.record_id: row
        for row in session.execute(
            select(DeathRecord.record_id, DeathRecord.match, DeathRecord.status,
                   DeathRecord.died_on, DeathRecord.died_on_precision, DeathRecord.person_id)
            .where(DeathRecord.source == NOTICE_SOURCE,
                   DeathRecord.record_id.in_(sorted(set(frame["record_id"]))))
        )
    }  # fmt: skip
    acks = []
    for row, notice in enumerate(notices):
        record = stored.get(notice.record_id)
        if row in conflicts or record is None:
            acks.append(NoticeAck(notice.record_id, notice.event, "conflict", "unknown",
                                  _NEXT["conflict"]))  # fmt: skip
            continue
        outcome, key = _outcome(record.match, record.status)
        status = "duplicate" if row in duplicates else "accepted"
        acks.append(
            NoticeAck(
                notice.record_id, notice.event, status, outcome, _NEXT[key],
                died_on=record.died_on.isoformat(),
                died_on_precision=str(record.died_on_precision),
            )
        )  # fmt: skip
    return acks


def _outcome(match: DeathMatch | str, status: RecordStatus | str) -> tuple[str, str]:
    """Return a stored notice's outcome for its sender, and which next step it takes."""
    if status != RecordStatus.ACTIVE:
        return "withdrawn", "withdrawn"
    if match == DeathMatch.ID_NUMBER:
        return "matched", "matched"
    if match in (DeathMatch.UNCONFIRMED, DeathMatch.NAME_MISMATCH):
        return "ambiguous", "ambiguous"
    if match == DeathMatch.AMBIGUOUS:
        return "ambiguous", "ambiguous_several"
    return "unknown", "unknown"


def receive_notify_message(
    session: Session, *, sender: str, message_id: str, payload: bytes,
    notices: Sequence[DeathNotice], demographic_confidence: float,
    roll: RollIndex | None = None, earliest: dt.date | None = None, today: dt.date | None = None,
) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
    """Receive one notify message once by (sender, message id); return its acks, and if replayed.

    The same message id with the same signed bytes answers the first acknowledgements and
    changes nothing; with other bytes it is refused as a replay.
    """
    digest = hashlib.sha256(payload).hexdigest()
    known = session.scalars(
        select(DeathNotification).where(
            DeathNotification.sender == sender, DeathNotification.message_id == message_id
        )
    ).first()
    if known is not None:
        if known.digest != digest:
            raise NoticeReplayed(
                f"header.message_id: {message_id!r} was received before with other content"
            )
        return list(known.acknowledgements["events"]), True
    acks = [
        ack.as_dict()
        for ack in receive_death_notices(
            session,
            notices=notices,
            roll=roll,
            demographic_confidence=demographic_confidence,
            earliest=earliest,
            today=today,
        )
    ]
    session.add(
        DeathNotification(
            sender=sender, message_id=message_id, digest=digest, events=len(notices),
            acknowledgements={"events": acks},
        )
    )  # fmt: skip
    session.flush()
    return acks, False
