"""The certification workflow policy, read from config/certification.toml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liveness.errors import ConfigurationError
from liveness.policy_files import read_policy_file
from models import VisitOutcome

_CYCLE_KEYS = ("valid_months", "renewal_window_days", "notice_days")
# The notices the workflow sends, and the fields each text may use.
NOTICE_FIELDS = {"face": ("due",), "lapse": ("end", "deadline")}


@dataclass(frozen=True)
class CyclePolicy:
    """How long a certification lasts, when it renews, and the notice before a lapse."""

    valid_months: int
    renewal_window_days: int
    notice_days: int


@dataclass(frozen=True)
class GuardPolicy:
    """When a run stops before publishing because it would lower too many people at once."""

    max_downgrade_share: float
    max_new_deceased_share: float
    min_persons: int
    share_period_days: int
    # However long since the previous run, the allowances grow no further than these.
    max_downgrade_share_ceiling: float
    max_new_deceased_share_ceiling: float


@dataclass(frozen=True)
class LapsePolicy:
    """What counts as a review that happened and failed, before a lapse may suspend."""

    failed_visit_outcomes: tuple[str, ...]
    remote_after_visit_outcomes: tuple[str, ...]


@dataclass(frozen=True)
class CertificationPolicy:
    """The workflow numbers: cycles per benefit type, review deadlines, payment day."""

    version: str
    cycle: CyclePolicy
    face_due_days: int
    visit_due_days: int
    death_review_due_days: int
    payment_day: int
    guard: GuardPolicy
    lock_stale_after_s: int
    four_eyes_back_pay: float
    audit_share: float
    terminate_after_death_days: int
    suspend_when_imprisoned: tuple[str, ...]
    own_face_channels: tuple[str, ...]
    proxy_allowed: bool
    area_prefixes: tuple[str, ...]
    lapse: LapsePolicy
    notice_texts: Mapping[str, str]
    overrides: Mapping[str, CyclePolicy] = field(default_factory=dict)

    def cycle_for(self, benefit_type: str) -> CyclePolicy:
        """Return the cycle that applies to `benefit_type`."""
        return self.overrides.get(benefit_type, self.cycle)


def _positive_int(table: Mapping[str, Any], key: str, where: str, origin: str) -> int:
    value = table.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{origin}: {where}.{key} must be a positive integer")
    return value


def _positive_number(table: Mapping[str, Any], key: str, where: str, origin: str) -> float:
    value = table.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{origin}: {where}.{key} must be a positive number")
    return float(value)


def _strings(table: Mapping[str, Any], key: str, where: str, origin: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigurationError(f"{origin}: {where}.{key} must be a list of strings")
    return tuple(value)


def _share(table: Mapping[str, Any], key: str, origin: str, where: str = "guard") -> float:
    value = table.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 1:
        raise ConfigurationError(f"{origin}: {where}.{key} must be a number in (0, 1]")
    return float(value)


def load_certification_policy(path: Path) -> CertificationPolicy:
    """Read and validate the certification policy file."""
    policy_file = read_policy_file(path, what="certification policy")
    document = policy_file.document
    origin = str(path)
    cycle_table = document.get("cycle", {})
    cycle = CyclePolicy(*(_positive_int(cycle_table, key, "cycle", origin) for key in _CYCLE_KEYS))
    overrides: dict[str, CyclePolicy] = {}
    for benefit_type, table in cycle_table.get("overrides", {}).items():
        unknown = set(table) - set(_CYCLE_KEYS)
        if unknown:
            raise ConfigurationError(
                f"{origin}: cycle.overrides.{benefit_type}.{sorted(unknown)[0]} is not a setting"
            )
        merged = {key: table.get(key, getattr(cycle, key)) for key in _CYCLE_KEYS}
        where = f"cycle.overrides.{benefit_type}"
        overrides[benefit_type] = CyclePolicy(
            *(_positive_int(merged, key, where, origin) for key in _CYCLE_KEYS)
        )
    review = document.get("review", {})
    payment = document.get("payment", {})
    guard = document.get("guard", {})
    lists = document.get("lists", {})
    lapse = document.get("lapse", {})
    face = review.get("face", {})
    texts = document.get("notices", {})
    for template, fields in NOTICE_FIELDS.items():
        text = texts.get(template)
        if not isinstance(text, str) or not text.strip():
            raise ConfigurationError(f"{origin}: notices.{template} must be a text")
        try:
            text.format(**{name: "x" for name in fields})
        except (KeyError, IndexError, ValueError):
            raise ConfigurationError(
                f"{origin}: notices.{template} may use only "
                + ", ".join("{" + name + "}" for name in fields)
            ) from None
    outcomes = {str(outcome) for outcome in VisitOutcome}
    lapse_policy = LapsePolicy(
        failed_visit_outcomes=_strings(lapse, "failed_visit_outcomes", "lapse", origin),
        remote_after_visit_outcomes=_strings(lapse, "remote_after_visit_outcomes", "lapse", origin),
    )
    for key in ("failed_visit_outcomes", "remote_after_visit_outcomes"):
        unknown = set(getattr(lapse_policy, key)) - outcomes
        if unknown:
            raise ConfigurationError(
                f"{origin}: lapse.{key}: {sorted(unknown)[0]} is not an outcome"
            )
    if set(lapse_policy.failed_visit_outcomes) & {"alive_confirmed", "in_hospital"}:
        raise ConfigurationError(
            f"{origin}: lapse.failed_visit_outcomes: a visit that found the person alive "
            "never fails"
        )
    payment_day = _positive_int(payment, "day_of_month", "payment", origin)
    if payment_day > 28:
        raise ConfigurationError(f"{origin}: payment.day_of_month must be 1 to 28")
    return CertificationPolicy(
        version=policy_file.version,
        cycle=cycle,
        face_due_days=_positive_int(review, "face_due_days", "review", origin),
        visit_due_days=_positive_int(review, "visit_due_days", "review", origin),
        death_review_due_days=_positive_int(review, "death_review_due_days", "review", origin),
        payment_day=payment_day,
        guard=GuardPolicy(
            max_downgrade_share=_share(guard, "max_downgrade_share", origin),
            max_new_deceased_share=_share(guard, "max_new_deceased_share", origin),
            min_persons=_positive_int(guard, "min_persons", "guard", origin),
            share_period_days=_positive_int(guard, "share_period_days", "guard", origin),
            max_downgrade_share_ceiling=_share(guard, "max_downgrade_share_ceiling", origin),
            max_new_deceased_share_ceiling=_share(guard, "max_new_deceased_share_ceiling", origin),
        ),
        lock_stale_after_s=_positive_int(
            document.get("run", {}), "lock_stale_after_s", "run", origin
        ),
        four_eyes_back_pay=_positive_number(lists, "four_eyes_back_pay", "lists", origin),
        audit_share=_share(lists, "audit_share", origin, "lists"),
        terminate_after_death_days=_positive_int(
            lists, "terminate_after_death_days", "lists", origin
        ),
        suspend_when_imprisoned=_strings(lists, "suspend_when_imprisoned", "lists", origin),
        own_face_channels=_strings(face, "own_channels", "review.face", origin),
        proxy_allowed=bool(face.get("proxy_allowed", False)),
        area_prefixes=_strings(document.get("area", {}), "region_prefixes", "area", origin),
        lapse=lapse_policy,
        notice_texts={template: texts[template] for template in NOTICE_FIELDS},
        overrides=overrides,
    )
