"""Policy changes tried on history: replay a period under a candidate policy folder, compare."""

from liveness.whatif.history import History, WhatIfInvalid, read_history
from liveness.whatif.service import save_report, stored_report, stored_reports, what_if

__all__ = [
    "History",
    "WhatIfInvalid",
    "read_history",
    "save_report",
    "stored_report",
    "stored_reports",
    "what_if",
]
