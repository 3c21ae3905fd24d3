"""planned week: each home visit's week within its grid's weekly capacity

A run plans every home visit it opens into a week (its Monday) so that no week of a grid holds
more visits than the grid can make. Visits opened before have none: they count in the current
week until done.

Revision ID: 0015
Revises: 0014
Create Date: 2027-01-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("planned_week", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_column("planned_week")
