"""Why a review is on a worker's list, in plain words in the page's language: never a code.

The words come from messages.toml; a level's full reasons (rule, window, sources) are the
scoring's own sentence (liveness.scoring.explain). Every code the engine writes has its
words (tests/web/test_worker_forms.py); one it does not know says so in words.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from api.web.i18n import Lang, catalogue, label, translate
from liveness.review.service import DEATH_REVIEW_RULE
from liveness.scoring.explain import render_reasons
from liveness.scoring.grade import LEVELS, RULES
from liveness.views.overdue import CAUSES

# Every reason code the engine stores, and the message that says it in words.
REASON_MESSAGES = {
    **{f"rule:{rule}": f"reason_rule_{rule}" for rule in RULES},
    **{f"level:{level}": f"level_{level}" for level in LEVELS},
    **{f"cause:{cause}": f"task_cause_{cause}" for cause in CAUSES},
    f"rule:{DEATH_REVIEW_RULE}": f"reason_{DEATH_REVIEW_RULE}",
    "overdue": "reason_overdue",
    "unknown": "reason_unknown",
}


def _said(lang: Lang, key: str, **values: object) -> str:
    """Return a message, or the words for an unknown reason when the key has none."""
    if key in catalogue():
        return translate(lang, key, **values)
    return translate(lang, "reason_unknown")


def plain_reasons(reasons: dict[str, Any] | None, lang: Lang) -> str:
    """Render a task's or assessment's reasons as a sentence in plain words."""
    reasons = reasons or {}
    rule, level = reasons.get("rule"), reasons.get("level")
    if level in LEVELS and rule in RULES and {"window", "long"} <= reasons.keys():
        return render_reasons(reasons, lang=lang)
    if rule == DEATH_REVIEW_RULE:
        record = reasons.get("record") or {}
        return translate(
            lang, f"reason_{DEATH_REVIEW_RULE}", name=record.get("name", ""),
            died_on=record.get("died_on", ""),
        )  # fmt: skip
    if rule in RULES:
        return _said(lang, f"reason_rule_{rule}")
    # Reasons stored without their rule (or with the level as the rule): the level in words.
    shown = level if level in LEVELS else rule
    if shown in LEVELS:
        return translate(lang, "reason_level", level=translate(lang, f"level_{shown}"))
    return translate(lang, "reason_unknown")


def _risk(lang: Lang, risk: dict[str, Any]) -> list[str]:
    """Say what a risk review found: which sources fell silent since when, or P(alive)."""
    said = [
        translate(lang, "reason_risk_silent", source=label(lang, "source", source), last=last)
        for source, last in (risk.get("silent") or {}).items()
    ]
    if "probability" in risk:
        said.append(translate(lang, "reason_risk_probability", probability=risk["probability"]))
    return said


def why_listed(
    lang: Lang, *, cause: str | None, task_reasons: dict[str, Any], current: dict[str, Any] | None,
    due_on: dt.date, today: dt.date,
) -> list[str]:  # fmt: skip
    """Return why a review is on the list, sentence by sentence, current as of the latest run.

    Why it was opened (the cause), what the record said for a death review, the person's
    level as the latest run explains it (the task's own reasons, as of its opening, only when
    no later run assessed them), and how late it is.
    """
    said = []
    if cause:
        said.append(_said(lang, f"task_cause_{cause}"))
    said.extend(_risk(lang, task_reasons.get("risk") or {}))
    if task_reasons.get("rule") == DEATH_REVIEW_RULE:
        said.append(plain_reasons(task_reasons, lang))
    said.append(plain_reasons(current if current else task_reasons, lang))
    if due_on < today:
        said.append(translate(lang, "reason_overdue", days=(today - due_on).days))
    return said
