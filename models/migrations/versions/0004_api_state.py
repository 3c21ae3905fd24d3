"""api state: list acks, idempotency keys, verifier secrets, face callbacks

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "list_acks",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client", name=op.f("pk_list_acks")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("client", "key", name=op.f("uq_idempotency_keys_client_key")),
    )
    op.create_table(
        "api_client_secrets",
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_clients.id"],
            name=op.f("fk_api_client_secrets_client_id_api_clients"),
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_api_client_secrets")),
    )
    op.create_table(
        "face_callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["review_tasks.id"], name=op.f("fk_face_callbacks_task_id_review_tasks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_callbacks")),
        sa.UniqueConstraint("signature", name=op.f("uq_face_callbacks_signature")),
        sa.UniqueConstraint("task_id", name=op.f("uq_face_callbacks_task_id")),
    )


def downgrade() -> None:
    op.drop_table("face_callbacks")
    op.drop_table("api_client_secrets")
    op.drop_table("idempotency_keys")
    op.drop_table("list_acks")
