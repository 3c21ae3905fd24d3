"""Reference formats of every source of SOURCES.md, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BENEFIT_TYPES", "SOURCES", "Column", "ColumnKind", "SourceSpec"]

# `money` is yuan exact to the fen: at most two decimals, parsed from its text, never a float.
ColumnKind = Literal["str", "id_number", "date", "timestamp", "bool", "decimal", "money", "enum"]


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
    ),
    SourceSpec(
        "card_txn",
        ("record_id",),
        "txn_at",
        (
            _req("record_id"),
            _req("card_no"),
            _req("txn_at", "timestamp"),
            _req(
                "channel",
                "enum",
                ("pos_pin", "pos_tap", "counter", "atm", "online", "auto_debit"),
            ),
            _opt("merchant_category"),
            # A balance enquiry is a card use of no money: evidence all the same.
            Column("amount", "money", False, allow_zero=True),
            _opt("city_code"),
            _CORRECTION,
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
            _req(
                "visit_type",
                "enum",
                (
                    "outpatient",
                    "emergency",
                    "inpatient_admission",
                    "inpatient_discharge",
                    "pharmacy",
                    "home_care",
                ),
            ),
            _opt("discharge_outcome", "enum", ("alive", "deceased")),
            _opt("city_code"),
            _CORRECTION,
            _VOIDED,
        ),
        requires=_VOID_BY_CORRECTION,
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
    ),
)

SOURCES: dict[str, SourceSpec] = {s.name: s for s in _SPECS}
