"""Reference formats of every source of SOURCES.md, as data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

__all__ = [
    "BENEFIT_TYPES",
    "BUILTIN_TRACE_SOURCES",
    "COLUMN_KINDS",
    "LINK_COLUMNS",
    "LINK_MODES",
    "SOURCES",
    "Column",
    "ColumnKind",
    "LinkMode",
    "SourceSpec",
    "TraceSpec",
]

# `money` is yuan exact to the fen: at most two decimals, parsed from its text, never a float.
# `partial_date` is a date known to the day, the month or the year only (`YYYY-MM-DD` or
# `YYYYMMDD`, `YYYY-MM`, `YYYY`), kept as that text: a registry's date of death.
ColumnKind = Literal[
    "str", "id_number", "date", "timestamp", "bool", "decimal", "money", "enum", "partial_date"
]
COLUMN_KINDS: tuple[str, ...] = get_args(ColumnKind)
# How a trace row finds its person: its identity number on the roll, its card number through
# the cards register (valid on the day), or its name and birth date on the roll (unique only).
LinkMode = Literal["id_number", "card_no", "name_birth_date"]
LINK_MODES: tuple[str, ...] = get_args(LinkMode)
# The reference columns each link mode reads, and the kind each must have.
LINK_COLUMNS: Mapping[str, tuple[tuple[str, ColumnKind], ...]] = MappingProxyType(
    {
        "id_number": (("id_number", "id_number"),),
        "card_no": (("card_no", "str"),),
        "name_birth_date": (("name", "str"), ("birth_date", "date")),
    }
)


@dataclass(frozen=True)
class Column:
    """Describe one column of a reference format.

    ``required`` columns must be present in the file and non-blank in every row, except
    when ``allow_blank`` is set: then the column must be present but a blank value is
    loaded (cremation and deregistration identify people by name when the number is blank).
    A date or timestamp lies neither before the configured earliest date nor after the
    delivery's arrival, unless ``future`` says it may (a benefit granted from next month, a
    card's end of validity). A money amount is positive (``allow_zero``: or zero) and at most
    its configured ceiling; a decimal lies within ``bounds`` where given.
    """

    name: str
    kind: ColumnKind
    required: bool
    values: tuple[str, ...] = ()
    allow_blank: bool = False
    future: bool = False
    allow_zero: bool = False
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class TraceSpec:
    """Describe how a trace source's rows become evidence.

    ``link`` is tried in order, row by row: a row is keyed by the first mode whose columns
    it fills (``name_birth_date`` may only come last, as the fallback). ``time_column`` (a
    timestamp, or a date) dates the event. Each row's kind is ``kind_map[row[kind_column]]``
    or, without a kind column, the one kind in ``kinds``; transit and face compute theirs in
    code (``kind_column`` None with several kinds). Sources of one ``group`` record the same
    acts and agree as one source; ``label`` names the source in words, per language.
    """

    link: tuple[LinkMode, ...]
    time_column: str
    kinds: tuple[str, ...]
    group: str
    label: Mapping[str, str]
    kind_column: str | None = None
    kind_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class SourceSpec:
    """Describe a source: its name, primary key, replication cursor, columns and row rules.

    ``order`` holds (earlier, later) pairs of date columns: where both are given, the later
    is not before the earlier. ``minimum_age`` names (birth date, benefit type): the person is
    at least the configured minimum age of the benefit type when the delivery arrives.
    ``requires`` holds (flag, needed) pairs of boolean columns: the flag is true only with
    the needed one (a record is withdrawn only by a correction).
    """

    name: str
    key: tuple[str, ...]
    cursor: str | None
    columns: tuple[Column, ...]
    order: tuple[tuple[str, str], ...] = ()
    minimum_age: tuple[str, str] | None = None
    requires: tuple[tuple[str, str], ...] = ()
    trace: TraceSpec | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        """Return the reference column names in order."""
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Return the names of the columns a file must contain."""
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        """Return the column called ``name`` (KeyError if unknown)."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_SEX = ("M", "F")
BENEFIT_TYPES = (
    "enterprise_pension",
    "institution_pension",
    "resident_pension",
    "work_injury_long_term",
    "survivor_pension",
    "unemployment",
)


def _req(name: str, kind: ColumnKind = "str", values: tuple[str, ...] = ()) -> Column:
    return Column(name, kind, True, values)


def _opt(name: str, kind: ColumnKind = "str", values: tuple[str, ...] = ()) -> Column:
    return Column(name, kind, False, values)


# correction=true replaces an earlier record with the same record_id (SOURCES.md, record_id).
_CORRECTION = _opt("correction", "bool")
# voided=true, with correction=true, withdraws an earlier death record (or medical visit).
_VOIDED = _opt("voided", "bool")
_VOID_BY_CORRECTION = (("voided", "correction"),)


def _trace(
    link: LinkMode, time_column: str, kinds: tuple[str, ...], zh: str, en: str, *,
    group: str, kind_column: str | None = None,
) -> TraceSpec:  # fmt: skip
    # The built-in kind columns carry the kinds themselves (channel, visit type).
    kind_map = MappingProxyType({k: k for k in kinds} if kind_column else {})
    return TraceSpec(
        link=(link,), time_column=time_column, kinds=kinds, group=group,
        label=MappingProxyType({"zh": zh, "en": en}), kind_column=kind_column, kind_map=kind_map,
    )  # fmt: skip


_CHANNELS = ("pos_pin", "pos_tap", "counter", "atm", "online", "auto_debit")
_VISIT_TYPES = (
    "outpatient",
    "emergency",
    "inpatient_admission",
    "inpatient_discharge",
    "pharmacy",
    "home_care",
)
_FACE_KINDS = (
    "pass_app", "pass_kiosk", "pass_assisted", "pass_proxy", "fail", "no_liveness", "no_face",
)  # fmt: skip

_SPECS = (
    SourceSpec(
        "registry",
        ("person_ref", "benefit_type"),
        None,
        (
            _req("person_ref"),
            _req("id_number", "id_number"),
            _req("name"),
            _req("sex", "enum", _SEX),
            _req("birth_date", "date"),
            _req("benefit_type", "enum", BENEFIT_TYPES),
            _req("monthly_amount", "money"),
            Column("benefit_start", "date", True, future=True),
            _opt("bank_account"),
            _opt("phone"),
            _opt("address"),
            _req("region_code"),
            _req("grid_code"),
            _req("status", "enum", ("active", "suspended", "terminated")),
            _opt("last_certified_on", "date"),
        ),
        order=(("birth_date", "benefit_start"),),
        minimum_age=("birth_date", "benefit_type"),
    ),
    SourceSpec(
        "cards",
        ("card_no",),
        "issued_on",
        (
            _req("card_no"),
            _req("card_kind", "enum", ("transit_senior", "citizen", "social_security")),
            _req("id_number", "id_number"),
            _req("issued_on", "date"),
            Column("cancelled_on", "date", False, future=True),
        ),
        order=(("issued_on", "cancelled_on"),),
    ),
    SourceSpec(
        "transit",
        ("record_id",),
        "tapped_at",
        (
            _req("record_id"),
            _req("card_no"),
            _req("tapped_at", "timestamp"),
            _req("city_code"),
            _opt("mode", "enum", ("bus", "metro", "ferry")),
            _opt("line"),
            _opt("station"),
            _opt("face_match", "bool"),
            _CORRECTION,
        ),
        # The kind says whether the gate matched the holder's face (computed in the ingest).
        trace=_trace(
            "card_no",
            "tapped_at",
            ("tap_face", "tap", "tap_face_failed"),
            "公交刷卡",
            "transit",
            group="transit",
        ),
    ),
    SourceSpec(
        "card_txn",
        ("record_id",),
        "txn_at",
        (
            _req("record_id"),
            _req("card_no"),
            _req("txn_at", "timestamp"),
            _req("channel", "enum", _CHANNELS),
            _opt("merchant_category"),
            # A balance enquiry is a card use of no money: evidence all the same.
            Column("amount", "money", False, allow_zero=True),
            _opt("city_code"),
            _CORRECTION,
        ),
        trace=_trace(
            "card_no",
            "txn_at",
            _CHANNELS,
            "市民卡交易",
            "card payments",
            group="card_txn",
            kind_column="channel",
        ),
    ),
    SourceSpec(
        "medical",
        ("record_id",),
        "visit_at",
        (
            _req("record_id"),
            _req("id_number", "id_number"),
            _opt("name"),
            _req("visit_at", "timestamp"),
            _req("institution_code"),
            _req("visit_type", "enum", _VISIT_TYPES),
            _opt("discharge_outcome", "enum", ("alive", "deceased")),
            _opt("city_code"),
            _CORRECTION,
            _VOIDED,
        ),
        requires=_VOID_BY_CORRECTION,
        trace=_trace(
            "id_number",
            "visit_at",
            _VISIT_TYPES,
            "医保结算",
            "medical",
            group="medical",
            kind_column="visit_type",
        ),
    ),
    SourceSpec(
        "cremation",
        ("record_id",),
        "cremated_on",
        (
            _req("record_id"),
            Column("id_number", "id_number", True, allow_blank=True),
            _req("name"),
            _opt("sex", "enum", _SEX),
            _opt("birth_date", "date"),
            _req("died_on", "date"),
            _req("cremated_on", "date"),
            _opt("funeral_home"),
            _opt("region_code"),
            _CORRECTION,
            _VOIDED,
        ),
        order=(("birth_date", "died_on"), ("died_on", "cremated_on")),
        requires=_VOID_BY_CORRECTION,
    ),
    SourceSpec(
        "deregistration",
        ("record_id",),
        "deregistered_on",
        (
            _req("record_id"),
            Column("id_number", "id_number", True, allow_blank=True),
            _req("name"),
            _req("deregistered_on", "date"),
            _req(
                "reason",
                "enum",
                ("death", "abroad", "military", "duplicate", "moved_out", "other"),
            ),
            _opt("died_on", "date"),
            _opt("new_id_number", "id_number"),
            _CORRECTION,
            _VOIDED,
        ),
        order=(("died_on", "deregistered_on"),),
        requires=_VOID_BY_CORRECTION,
    ),
    # A civil registry's death notices (OpenCRVS-style events), pulled from its feed or table
    # or delivered as files: the same events as the pushed notify messages.
    SourceSpec(
        "registry_notice",
        ("record_id",),
        "registered_on",
        (
            _req("record_id"),
            _req("event", "enum", ("registered", "corrected", "voided")),
            # Without a number a notice never suspends: it opens a death review.
            Column("id_number", "id_number", True, allow_blank=True),
            _req("name"),
            _opt("sex", "enum", _SEX),
            _opt("birth_date", "date"),
            _opt("region_code"),
            _req("died_on", "partial_date"),
            # The event's date: the registration, or the correction or void.
            _req("registered_on", "date"),
        ),
        order=(("birth_date", "died_on"), ("died_on", "registered_on")),
    ),
    SourceSpec(
        "face",
        ("record_id",),
        "verified_at",
        (
            _req("record_id"),
            _req("id_number", "id_number"),
            _req("verified_at", "timestamp"),
            _req("result", "enum", ("pass", "fail", "no_liveness", "no_face")),
            _opt("channel", "enum", ("app", "kiosk", "assisted", "proxy")),
            Column("score", "decimal", False, bounds=(0.0, 1.0)),
            _opt("request_id"),
            _opt("face_id"),
            _CORRECTION,
        ),
        # The kind is the result, a pass by its channel (computed in the ingest).
        trace=_trace(
            "id_number",
            "verified_at",
            _FACE_KINDS,
            "人脸认证",
            "face verification",
            group="face",
        ),
    ),
)

SOURCES: dict[str, SourceSpec] = {s.name: s for s in _SPECS}
# The trace sources every deployment has; others are declared in config/sources.toml.
BUILTIN_TRACE_SOURCES: tuple[str, ...] = tuple(s.name for s in _SPECS if s.trace is not None)
