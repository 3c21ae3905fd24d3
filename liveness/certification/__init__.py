"""Certification: the workflow policy, cycles and silent certification."""

from liveness.certification.policy import (
    CertificationPolicy,
    CyclePolicy,
    load_certification_policy,
)
from liveness.certification.service import (
    add_months,
    certify_persons,
    certify_silently,
    valid_until,
)

__all__ = [
    "CertificationPolicy",
    "CyclePolicy",
    "add_months",
    "certify_persons",
    "certify_silently",
    "load_certification_policy",
    "valid_until",
]
