"""integrity: leads, inspection orders, lead answers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inspection_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("issued_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inspection_orders")),
    )
    op.create_index(op.f("ix_inspection_orders_region_code"), "inspection_orders", ["region_code"])
    op.create_table(
        "integrity_leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("person_refs", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("amount_at_risk", sa.Numeric(12, 2), nullable=True),
        sa.Column("status", sa.String(length=9), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=True),
        sa.Column("policy_version", sa.String(length=12), nullable=False),
        sa.Column("found_on", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["inspection_orders.id"],
            name=op.f("fk_integrity_leads_order_id_inspection_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrity_leads")),
        sa.UniqueConstraint("rule", "key", name=op.f("uq_integrity_leads_rule_key")),
    )
    op.create_index(op.f("ix_integrity_leads_rule"), "integrity_leads", ["rule"])
    op.create_index(op.f("ix_integrity_leads_region_code"), "integrity_leads", ["region_code"])
    op.create_index(op.f("ix_integrity_leads_order_id"), "integrity_leads", ["order_id"])
    op.create_table(
        "lead_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=10), nullable=False),
        sa.Column("amount_to_recover", sa.Numeric(12, 2), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("review", sa.String(length=8), nullable=True),
        sa.Column("reviewed_by", sa.String(length=64), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["integrity_leads.id"],
            name=op.f("fk_lead_answers_lead_id_integrity_leads"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["inspection_orders.id"],
            name=op.f("fk_lead_answers_order_id_inspection_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_answers")),
        sa.UniqueConstraint("lead_id", name=op.f("uq_lead_answers_lead_id")),
    )
    op.create_index(op.f("ix_lead_answers_order_id"), "lead_answers", ["order_id"])


def downgrade() -> None:
    op.drop_table("lead_answers")
    op.drop_table("integrity_leads")
    op.drop_table("inspection_orders")
