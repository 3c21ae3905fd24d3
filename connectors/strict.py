"""The base of typed configuration models: frozen, unknown keys refused, no silent coercion.

It lives here, below the domain core, so that the connectors' own file (config/sources.toml)
and the core's policy files (liveness.policy_files) are read by the same kind of model.
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
