"""task claims: the person's address, for the grid worker's queue and its walking order

Claims themselves need no schema (review_tasks.claimed_by and claim_expires_at exist since
0003); the queue shows and sorts by the address the roll delivers.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTERs: a batch copy of `persons` on SQLite would drop its change-log triggers (0007).
    op.add_column("persons", sa.Column("address", sa.String(length=128), nullable=True))


def downgrade() -> None:
    op.drop_column("persons", "address")
