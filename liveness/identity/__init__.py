"""Linking evidence to persons on the roll: by number, by card, by name and birth date."""

from liveness.identity.linking import (
    CardIndex,
    RollIndex,
    link_by_card,
    link_by_id_number,
    link_by_name_and_birth_date,
    link_by_number_and_name,
    match_death_records,
    names_agree,
)

__all__ = [
    "CardIndex",
    "RollIndex",
    "link_by_card",
    "link_by_id_number",
    "link_by_name_and_birth_date",
    "link_by_number_and_name",
    "match_death_records",
    "names_agree",
]
