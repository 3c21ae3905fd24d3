"""A lead's evidence as labelled rows in the page's language, its numbers masked."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from api.web.formats import money_text
from api.web.i18n import Lang, catalogue, label, translate
from api.web.payments import LIST_SEPARATOR
from liveness.views.masking import mask_evidence

# Evidence fields that are days, amounts of yuan, or domain values with words of their own.
DATE_FIELDS = frozenset({"died_on", "deregistered_on", "birth_date", "day", "on"})
AMOUNT_FIELDS = frozenset({"monthly_amount"})
# (the list a field sits in, or "" at the top) -> field -> the label family of its values
VALUE_KINDS: dict[str, dict[str, str]] = {
    "": {"death_sources": "evidence_source", "reason": "lead_dereg_reason", "sex": "lead_sex"},
    "persons": {"sex": "lead_sex"},
    "listed": {"source": "source", "kind": "trace_kind"},
    "outcomes": {"kind": "kind", "outcome": "outcome"},
}


@dataclass(frozen=True)
class EvidenceRow:
    """One evidence field: its label and its value, both in words."""

    key: str
    label: str
    value: str


@dataclass(frozen=True)
class EvidenceGroup:
    """A list inside the evidence (persons, traces, outcomes): each item its own rows."""

    key: str
    label: str
    items: list[list[EvidenceRow]] = field(default_factory=list)


@dataclass(frozen=True)
class EvidenceView:
    """A lead's evidence, ready to show: the fields, then the lists."""

    rows: list[EvidenceRow]
    groups: list[EvidenceGroup]


def field_label(lang: Lang, key: str) -> str:
    """Return an evidence field's label; a field without words shows its own name."""
    words = f"lead_ev_{key}"
    return translate(lang, words) if words in catalogue() else key


def _date(value: Any) -> str:
    """Return a day as YYYY-MM-DD, whatever form it was stored in; else the value itself."""
    try:
        return dt.date.fromisoformat(str(value)[:10]).isoformat()
    except ValueError:
        return str(value)


def field_value(lang: Lang, key: str, value: Any, *, within: str = "") -> str:
    """Return one (already masked) evidence value in words: a date, an amount, a word, a list."""
    if value is None or value == "":
        return translate(lang, "none")
    if isinstance(value, list):
        return LIST_SEPARATOR[lang].join(field_value(lang, key, v, within=within) for v in value)
    if isinstance(value, dict):
        return LIST_SEPARATOR[lang].join(
            f"{field_label(lang, k)}: {field_value(lang, k, v, within=within)}"
            for k, v in value.items()
        )
    kinds = VALUE_KINDS.get(within, {})
    if key in kinds:
        # A comma-joined list of values (death sources "cremation,medical") reads as words.
        parts = str(value).split(",") if key == "death_sources" else [str(value)]
        return LIST_SEPARATOR[lang].join(label(lang, kinds[key], part) for part in parts)
    if key in DATE_FIELDS:
        return _date(value)
    if key in AMOUNT_FIELDS:
        return money_text(value, lang)
    return str(value)


def _rows(lang: Lang, values: dict[str, Any], within: str) -> list[EvidenceRow]:
    """Return the scalar fields of one evidence mapping as rows."""
    return [
        EvidenceRow(key, field_label(lang, key), field_value(lang, key, value, within=within))
        for key, value in values.items()
        if not _is_group(value)
    ]


def _is_group(value: Any) -> bool:
    """Return whether a value is a list of records (shown as items) rather than a field."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def evidence_view(evidence: dict[str, Any], lang: Lang) -> EvidenceView:
    """Return a lead's evidence as labelled rows and groups, identity and card numbers masked."""
    shown = mask_evidence(evidence)
    groups = [
        EvidenceGroup(key, field_label(lang, key), [_rows(lang, item, key) for item in value])
        for key, value in shown.items()
        if _is_group(value)
    ]
    return EvidenceView(rows=_rows(lang, shown, ""), groups=groups)
