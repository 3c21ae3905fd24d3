"""A person's file, audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import Caller, require
from api.routers.common import ERRORS
from api.schemas import PersonRead
from liveness.access import hide_outside_grids
from liveness.views.person import no_person, person_view

router = APIRouter(prefix="/persons", tags=["persons"], responses=ERRORS)


@router.get("/{person_ref}", response_model=PersonRead, summary="Read a person's file")
def read_person(
    person_ref: Annotated[str, Path(max_length=32)],
    caller: Annotated[Caller, Depends(require("persons.read"))],
    days: Annotated[int, Query(ge=1, le=730, description="Days of evidence timeline.")] = 90,
) -> PersonRead:
    """Return level, certification, open tasks, reasons and recent traces per source."""
    entry = caller.audit("persons.read", "person", person_ref)
    view = person_view(
        caller.session, store=caller.services.store, person_ref=person_ref, today=caller.today(),
        window_days=days, traces=caller.services.traces,
    )  # fmt: skip
    hide_outside_grids(caller.principal, view.grid_code, absent=no_person(person_ref))
    entry.detail = {"days": days}
    return PersonRead.model_validate(view)
