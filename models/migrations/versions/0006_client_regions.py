"""client regions: the regions an inspector's API client is scoped to

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing clients get an empty list: only inspectors are scoped to regions.
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(
            sa.Column("regions", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("regions")
