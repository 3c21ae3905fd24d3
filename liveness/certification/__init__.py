"""Certification: the workflow policy, cycles and silent certification."""

from liveness.certification.policy import (
    CertificationPolicy,
    CyclePolicy,
    load_certification_policy,
)
from liveness.certification.service import (
    add_months,
    add_months_array,
    certify_persons,
    certify_silently,
    cycle_days,
    dates_of,
    valid_until,
)

__all__ = [
    "CertificationPolicy",
    "CyclePolicy",
    "add_months",
    "add_months_array",
    "certify_persons",
    "certify_silently",
    "cycle_days",
    "dates_of",
    "load_certification_policy",
    "valid_until",
]
