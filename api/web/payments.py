"""A benefit's payment state and history in words, for the person page."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from api.web.i18n import Lang, catalogue, label, translate
from liveness.views.schemas import BenefitPaymentRead

SEPARATOR = {"zh": "；", "en": "; "}
LIST_SEPARATOR = {"zh": "、", "en": ", "}
# Evidence keys whose values are themselves domain values, and the labels they take.
VALUE_KINDS = {
    "source": "evidence_source",
    "proof": "evidence_source",
    "suspended_for": "list_reason",
    "amends": "list_reason",
    "review_outcome": "outcome",
    "prior_reason": "list_reason",
    "amended_from": "list_reason",
    "restored_reason": "list_reason",
    "outcome": "outcome",
    "kind": "kind",
}


def money(amount: Decimal | float | int) -> str:
    """Return an amount of yuan with thousands separators and two decimals."""
    return f"{Decimal(amount):,.2f}"


def _value(lang: Lang, key: str, value: Any) -> str:
    """Return one cited value in words: labelled, listed or nested as needed."""
    if isinstance(value, list):
        return LIST_SEPARATOR[lang].join(_value(lang, key, item) for item in value)
    if isinstance(value, dict):
        return evidence_text(value, lang)
    if key in VALUE_KINDS and isinstance(value, str):
        return label(lang, VALUE_KINDS[key], value)
    return str(value)


def evidence_text(detail: dict[str, Any], lang: Lang) -> str:
    """Return the evidence an entry cites as a sentence; a key without words shows as key: value."""
    parts = []
    for key, value in detail.items():
        if value is None or value == [] or value == {}:
            continue
        words = f"evidence_{key}"
        text = _value(lang, key, value)
        if words in catalogue():
            parts.append(translate(lang, words, value=text))
        else:
            parts.append(f"{key}: {text}")
    return SEPARATOR[lang].join(parts)


def state_text(payment: BenefitPaymentRead, lang: Lang) -> str:
    """Return a benefit's payment state in words, with a reinstatement held for approval."""
    status = payment.status
    words = label(lang, "benefit_status", status)
    since = payment.suspended_from
    if status == "suspended" and payment.suspension_reason is not None:
        reason = label(lang, "list_reason", payment.suspension_reason)
        key = "payment_state_suspended" if since else "payment_state_suspended_undated"
        text = translate(lang, key, status=words, since=since, reason=reason)
        if payment.amended_from:
            prior = label(lang, "list_reason", payment.amended_from)
            text += translate(lang, "payment_state_amended_from", reason=prior)
    elif status == "terminated" and since:
        text = translate(lang, "payment_state_terminated", status=words, since=since)
    else:
        text = words
    if payment.held is not None:
        held = translate(lang, "payment_state_held", amount=money(payment.held.amount))
        text += SEPARATOR[lang] + held
    return text


def actor_text(name: str | None, lang: Lang) -> str:
    """Return who caused or approved an entry: a client's name, or the engine's part in words."""
    return "" if name is None else label(lang, "actor", name)


def payment_rows(
    payments: list[BenefitPaymentRead], lang: Lang, *, timezone: ZoneInfo
) -> list[dict[str, Any]]:
    """Return each benefit with its state in words and its history ready for the page."""
    return [
        {
            **dict(payment),
            "type_text": label(lang, "benefit", payment.benefit_type),
            "state_text": state_text(payment, lang),
            "roll_text": None
            if payment.roll_status in (None, payment.status)
            else translate(
                lang, "payment_state_roll",
                status=label(lang, "benefit_status", payment.roll_status),
            ),
            "rows": [
                {
                    **dict(entry),
                    "action_text": label(lang, "action", entry.action),
                    "reason_text": label(lang, "list_reason", entry.reason),
                    "event_text": "—" if entry.event is None
                    else label(lang, "payment_event", entry.event),
                    "standing_text": label(lang, "entry_standing", entry.standing),
                    "amount_text": money(entry.amount),
                    "caused_text": actor_text(entry.caused_by, lang),
                    "approved_text": actor_text(entry.approved_by, lang),
                    "approved_on": None if entry.approved_at is None
                    else entry.approved_at.astimezone(timezone).date(),
                    "evidence_text": evidence_text(entry.detail, lang),
                }
                for entry in payment.history
            ],
        }
        for payment in payments
    ]  # fmt: skip
