"""estimator artifacts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "estimator_artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trained_as_of", sa.Date(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("feature_names", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimator_artifacts")),
        sa.UniqueConstraint("version", name=op.f("uq_estimator_artifacts_version")),
    )
    with op.batch_alter_table("estimator_artifacts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_estimator_artifacts_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("estimator_artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimator_artifacts_created_at"))

    op.drop_table("estimator_artifacts")
