"""Activity traces: transit, card use, medical visits, face checks, and the data scenarios."""

from liveness.simulate.traces.card_use import build_card_txn, build_transit
from liveness.simulate.traces.care import (
    build_family_doctor,
    build_health_checks,
    build_long_term_care,
    build_remote_medical,
    build_vaccinations,
)
from liveness.simulate.traces.civic import build_counter, build_travel
from liveness.simulate.traces.community import build_community
from liveness.simulate.traces.draws import Trace, money_text
from liveness.simulate.traces.face import build_face
from liveness.simulate.traces.medical import IdentityDefects, build_medical

__all__ = [
    "IdentityDefects",
    "Trace",
    "build_card_txn",
    "build_community",
    "build_counter",
    "build_face",
    "build_family_doctor",
    "build_health_checks",
    "build_long_term_care",
    "build_medical",
    "build_remote_medical",
    "build_transit",
    "build_travel",
    "build_vaccinations",
    "money_text",
]
