"""payment state: a benefit's suspension as state-machine state; events on list entries

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASON = sa.String(19)

# The event of existing entries, from what they did: the one reading their action allows.
EVENT_OF_ENTRY = """
UPDATE list_entries SET event = CASE
    WHEN approved_by IS NOT NULL AND status = 'published' THEN 'approval'
    WHEN action = 'terminate' THEN 'death_stood'
    WHEN action = 'suspend' AND reason = 'deceased' THEN 'death'
    WHEN action = 'suspend' AND reason = 'lapsed' THEN 'lapse'
    WHEN action = 'suspend' AND reason = 'imprisoned' THEN 'imprisonment'
    WHEN action = 'reinstate' AND reason = 'death_withdrawn' THEN 'death_withdrawn'
    ELSE 'proof_of_life' END
"""
# A suspended benefit's current suspension is its latest suspend entry.
SUSPENSION_OF_BENEFIT = """
UPDATE benefits SET
    suspension_reason = (SELECT e.reason FROM list_entries e WHERE e.benefit_id = benefits.id
                         AND e.action = 'suspend' ORDER BY e.seq DESC LIMIT 1),
    suspended_from = (SELECT e.effective_on FROM list_entries e WHERE e.benefit_id = benefits.id
                      AND e.action = 'suspend' ORDER BY e.seq DESC LIMIT 1),
    suspended_as_of = (SELECT r.as_of FROM list_entries e JOIN runs r ON r.id = e.run_id
                       WHERE e.benefit_id = benefits.id AND e.action = 'suspend'
                       ORDER BY e.seq DESC LIMIT 1)
WHERE status IN ('suspended', 'terminated')
"""


def upgrade() -> None:
    with op.batch_alter_table("benefits") as batch:
        batch.add_column(sa.Column("roll_status", sa.String(10), nullable=True))
        batch.add_column(sa.Column("suspension_reason", REASON, nullable=True))
        batch.add_column(sa.Column("suspended_from", sa.Date(), nullable=True))
        batch.add_column(sa.Column("suspended_as_of", sa.Date(), nullable=True))
        batch.add_column(sa.Column("prior_reason", REASON, nullable=True))
        batch.add_column(sa.Column("unpaid_after", sa.Date(), nullable=True))
        batch.add_column(sa.Column("held_entry_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("list_entries") as batch:
        batch.add_column(sa.Column("event", sa.String(19), nullable=True))
    with op.batch_alter_table("review_tasks") as batch:
        batch.add_column(sa.Column("cause", sa.String(32), nullable=True))
    with op.batch_alter_table("death_records") as batch:
        batch.add_column(sa.Column("settled_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("settled_on", sa.Date(), nullable=True))
        batch.add_column(sa.Column("settlement", sa.String(32), nullable=True))
    with op.batch_alter_table("deregistrations") as batch:
        batch.add_column(sa.Column("status", sa.String(7), nullable=False, server_default="active"))
    with op.batch_alter_table("notices") as batch:
        batch.alter_column("channel", type_=sa.String(6), existing_type=sa.String(3))
    op.execute("UPDATE benefits SET roll_status = status")
    op.execute(
        "UPDATE list_entries SET reason = 'death_withdrawn' WHERE reason = 'death_record_voided'"
    )
    op.execute(EVENT_OF_ENTRY)
    op.execute(SUSPENSION_OF_BENEFIT)


def downgrade() -> None:
    op.execute(
        "UPDATE list_entries SET reason = 'death_record_voided' WHERE reason = 'death_withdrawn'"
    )
    with op.batch_alter_table("notices") as batch:
        batch.alter_column("channel", type_=sa.String(3), existing_type=sa.String(6))
    with op.batch_alter_table("deregistrations") as batch:
        batch.drop_column("status")
    with op.batch_alter_table("death_records") as batch:
        batch.drop_column("settlement")
        batch.drop_column("settled_on")
        batch.drop_column("settled_by")
    with op.batch_alter_table("review_tasks") as batch:
        batch.drop_column("cause")
    with op.batch_alter_table("list_entries") as batch:
        batch.drop_column("event")
    with op.batch_alter_table("benefits") as batch:
        for column in (
            "held_entry_id", "unpaid_after", "prior_reason", "suspended_as_of",
            "suspended_from", "suspension_reason", "roll_status",
        ):  # fmt: skip
            batch.drop_column(column)
