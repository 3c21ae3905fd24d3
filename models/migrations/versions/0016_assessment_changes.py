"""assessment changes: a run stores the assessments that changed, with their gist

A run now stores a person's assessment only when it changed (its gist: level, rule and the
facts the reasons cite), when the person is new to grading or their stored one is older than
the refresh period, or when they left the graded roll (`graded` false); the assessments of a
run are each person's latest row at or before it, found by the (person, run) index.

Revision ID: 0016
Revises: 0015
Create Date: 2027-01-11
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gist", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("graded", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch_op.create_index("ix_assessments_person_run", ["person_id", "run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_assessments_person_run")
        batch_op.drop_column("graded")
        batch_op.drop_column("gist")
