"""Activity traces: transit taps, citizen-card transactions, medical visits, face checks."""

from liveness.simulate.traces.card_use import build_card_txn, build_transit
from liveness.simulate.traces.draws import Trace, money_text
from liveness.simulate.traces.face import build_face
from liveness.simulate.traces.medical import IdentityDefects, build_medical

__all__ = [
    "IdentityDefects",
    "Trace",
    "build_card_txn",
    "build_face",
    "build_medical",
    "build_transit",
    "money_text",
]
