"""Masking in SQL (the hot reads, both paths) hides what `mask_id_number` hides."""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from liveness.views.masking import mask_id_number, masked_id_number


def test_the_sql_mask_is_the_python_mask(session: Session) -> None:
    """Every length a stored identity number can have (0-32), on each backend."""
    numbers = ["".join("1234567890X"[i % 11] for i in range(n)) for n in range(33)]
    masked = [session.scalar(select(masked_id_number(literal(number)))) for number in numbers]
    assert masked == [mask_id_number(number) for number in numbers]
