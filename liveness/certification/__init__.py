"""Certification: the workflow policy, cycles and silent certification."""

from typing import TYPE_CHECKING, Any

from liveness.certification.policy import (
    CertificationPolicy,
    CyclePolicy,
    load_certification_policy,
)

# The service (numpy, pandas) loads with the first of its names asked for, so that a command
# reading only the policy or the runs (`liveness runs`) starts without them.
if TYPE_CHECKING:
    from liveness.certification.service import (
        add_months,
        add_months_array,
        certify_persons,
        certify_silently,
        cycle_days,
        dates_of,
        valid_until,
    )


def __getattr__(name: str) -> Any:
    """Return a name of the certification service, importing the service on first use."""
    # The policy's names are bound above: only the service's reach here.
    if name in __all__:
        from liveness.certification import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
