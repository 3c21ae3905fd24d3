"""Masking for display: identity and card numbers, in Python and as SQL for the hot reads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    SQLColumnExpression,
    String,
    case,
    func,
    literal_column,
)


def mask_id_number(id_number: str) -> str:
    """Return an identity number with all but its first 6 and last 4 characters hidden."""
    if len(id_number) <= 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


# Enough stars for the longest identity number a person can hold (persons.id_number: 32).
_STARS = "*" * 32


def masked_id_number(id_number: SQLColumnExpression[str]) -> ColumnElement[str]:
    """Return `mask_id_number` as SQL, the same on SQLite and PostgreSQL (the hot reads).

    One expression for both ways of serving a hot read: the session path selects it, and the
    one-statement path compiles the same select for PostgreSQL.
    """
    # Constants as literals: the compiled statement takes its parameters by name only.
    one, three, six, ten = (literal_column(str(n), Integer) for n in (1, 3, 6, 10))
    length = func.length(id_number)
    stars = literal_column(f"'{_STARS}'", String)
    return case(
        (length <= ten, func.substr(stars, one, length, type_=String)),
        else_=func.substr(id_number, one, six, type_=String)
        + func.substr(stars, one, length - ten, type_=String)
        + func.substr(id_number, length - three, type_=String),
    )


def mask_card_number(card: str) -> str:
    """Return a card number with all but its last 4 characters hidden."""
    if len(card) <= 4:
        return "*" * len(card)
    return "*" * (len(card) - 4) + card[-4:]


def _mask_value(key: str, value: Any) -> Any:
    """Mask one evidence value by what its key names: an identity or a card number."""
    if isinstance(value, str) and "id_number" in key:
        return mask_id_number(value)
    if isinstance(value, str) and ("card" in key or "account" in key):
        # A bank account is the number on a bank card: shown by its last digits only.
        return mask_card_number(value)
    return mask_evidence(value)


def mask_evidence(evidence: Any) -> Any:
    """Return evidence (JSON values) with every identity and card number masked, for display."""
    if isinstance(evidence, dict):
        return {key: _mask_value(str(key), value) for key, value in evidence.items()}
    if isinstance(evidence, list):
        return [mask_evidence(item) for item in evidence]
    return evidence
