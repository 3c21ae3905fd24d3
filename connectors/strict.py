"""The base of the connectors' configuration models: frozen, unknown keys refused, strict.

The same behaviour as the core's policy models (liveness.policy_files.PolicyModel), which the
connectors may not import (they lie below the core); kept apart rather than imported the other
way, since importing any module of `connectors` loads the connectors and their data libraries,
which the core's quick commands (`liveness runs`) do without.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["StrictModel", "Texts", "as_tuple"]


def as_tuple(value: object) -> object:
    """Return a TOML array as a tuple, so that the models stay immutable; other values as given."""
    return tuple(value) if isinstance(value, list) else value


# A TOML array of strings, held as a tuple.
Texts = Annotated[tuple[str, ...], BeforeValidator(as_tuple)]


class StrictModel(BaseModel):
    """Base of every configuration model: frozen, unknown keys refused, types strict."""

    # strict: TOML has real types, so `recent = true` or `min_persons = "2"` are mistakes to
    # name, not values to coerce (a strict float still takes an integer such as `weight = 1`).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
