"""The live history a what-if replays, read on each backend: run dates, deliveries, outcomes."""

from __future__ import annotations

import datetime as dt

import pytest

from liveness.db import session_scope
from liveness.review.outcomes import record_outcome
from liveness.whatif import WhatIfInvalid, read_history
from tests.api.conftest import AS_OF, World, world  # noqa: F401  (a fixture)


def test_the_history_holds_the_run_dates_and_what_people_recorded(world: World) -> None:  # noqa: F811
    with session_scope(world.services.sessions) as session:
        record_outcome(
            session, task_id=world.tasks["visit_g1_low"], outcome="moved_away",
            actor="grid:G1", on=AS_OF + dt.timedelta(days=2), region="330102",
        )  # fmt: skip
    history = read_history(world.services, first=AS_OF, last=AS_OF + dt.timedelta(days=10))
    assert list(history.runs["as_of"]) == [AS_OF]
    outcomes = history.outcomes.to_dict("records")
    assert outcomes == [
        {
            "person_ref": "P2", "kind": "home_visit", "outcome": "moved_away",
            "on": AS_OF + dt.timedelta(days=2), "died_on": None, "region": "330102",
            "note": None, "by": "grid:G1",
        }
    ]  # fmt: skip
    # An outcome recorded after the period is not the period's.
    assert read_history(world.services, first=AS_OF, last=AS_OF).outcomes.empty
    with pytest.raises(WhatIfInvalid, match="no run in this period"):
        read_history(world.services, first=AS_OF + dt.timedelta(days=1), last=AS_OF.replace(2026))
    with pytest.raises(WhatIfInvalid, match="is after --to"):
        read_history(world.services, first=AS_OF, last=AS_OF - dt.timedelta(days=1))
