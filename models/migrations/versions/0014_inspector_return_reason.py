"""inspector return reason: an answer returned to the region says why, on record

The issuing level returns an inspector's answer with a reason; it stays with the answer until
the region answers again (the audit log keeps every return and its reason for the history).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lead_answers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("return_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lead_answers", schema=None) as batch_op:
        batch_op.drop_column("return_reason")
