"""trace links: unlinked rows per evidence part, and a log of relinks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing parts keep NULL in both: not counted, never tried, so the first relink reads them.
    with op.batch_alter_table("evidence_parts") as batch:
        batch.add_column(sa.Column("unlinked_rows", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("linked_through", sa.Integer(), nullable=True))
    op.create_table(
        "relinks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("through_delivery_id", sa.Integer(), nullable=False),
        sa.Column("parts_read", sa.Integer(), nullable=False),
        sa.Column("parts_rewritten", sa.Integer(), nullable=False),
        sa.Column("traces_linked", sa.Integer(), nullable=False),
        sa.Column("cards_relinked", sa.Integer(), nullable=False),
        sa.Column("death_records_matched", sa.Integer(), nullable=False),
        sa.Column("deregistrations_matched", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_relinks")),
    )


def downgrade() -> None:
    op.drop_table("relinks")
    with op.batch_alter_table("evidence_parts") as batch:
        batch.drop_column("linked_through")
        batch.drop_column("unlinked_rows")
