"""death notices: partial dates of death, sender keys, the notify messages received

A death record keeps the region its source gives, and how much of its date of death its
source knew (`died_on_precision`: day, month, year; every stored record knew the day). A
client's signing key says its algorithm (`hmac-sha256`, every stored one; or `ed25519`, a
public key). Each registry's
notify message is kept once by sender and message id, with its acknowledgements.

Revision ID: 0017
Revises: 0016
Create Date: 2027-01-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("death_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("died_on_precision", sa.String(length=5), server_default="day",
                      nullable=False)
        )  # fmt: skip
        batch_op.add_column(sa.Column("region_code", sa.String(length=12), nullable=True))
    with op.batch_alter_table("api_client_secrets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("algorithm", sa.String(length=16), server_default="hmac-sha256",
                      nullable=False)
        )  # fmt: skip
    op.create_table(
        "death_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("acknowledgements", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_death_notifications")),
        sa.UniqueConstraint(
            "sender", "message_id", name=op.f("uq_death_notifications_sender_message_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("death_notifications")
    with op.batch_alter_table("api_client_secrets", schema=None) as batch_op:
        batch_op.drop_column("algorithm")
    with op.batch_alter_table("death_records", schema=None) as batch_op:
        batch_op.drop_column("region_code")
        batch_op.drop_column("died_on_precision")
