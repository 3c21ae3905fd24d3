"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=11), nullable=False),
        sa.Column("grids", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_api_clients_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_clients_token_hash")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_ref", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("remote_addr", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_target", ["target_type", "target_ref"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=9), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_loaded", sa.Integer(), nullable=False),
        sa.Column("rows_redelivered", sa.Integer(), nullable=False),
        sa.Column("rows_quarantined", sa.Integer(), nullable=False),
        sa.Column("rows_unmatched", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_source_checksum", ["source", "checksum"], unique=False)

    op.create_table(
        "persons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_ref", sa.String(length=32), nullable=False),
        sa.Column("id_number", sa.String(length=32), nullable=False),
        sa.Column("id_status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("grid_code", sa.String(length=32), nullable=False),
        sa.Column("bank_account", sa.String(length=40), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        sa.UniqueConstraint("person_ref", name=op.f("uq_persons_person_ref")),
    )
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_persons_grid_code"), ["grid_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_persons_id_number"), ["id_number"], unique=False)
        batch_op.create_index("ix_persons_name_birth", ["name", "birth_date"], unique=False)
        batch_op.create_index(batch_op.f("ix_persons_region_code"), ["region_code"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_as_of"), ["as_of"], unique=False)

    op.create_table(
        "source_cursors",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("watermark", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_source_cursors")),
    )
    op.create_table(
        "source_volumes",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("traces", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "day", name=op.f("pk_source_volumes")),
    )
    op.create_table(
        "assessments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_assessments_person_id_persons")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_assessments_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessments")),
        sa.UniqueConstraint("run_id", "person_id", name=op.f("uq_assessments_run_id_person_id")),
    )
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assessments_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_assessments_run_id"), ["run_id"], unique=False)

    op.create_table(
        "benefits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("benefit_type", sa.String(length=21), nullable=False),
        sa.Column("monthly_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("benefit_start", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("last_certified_on", sa.Date(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_benefits_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benefits")),
        sa.UniqueConstraint(
            "person_id", "benefit_type", name=op.f("uq_benefits_person_id_benefit_type")
        ),
    )
    with op.batch_alter_table("benefits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_benefits_person_id"), ["person_id"], unique=False)

    op.create_table(
        "cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_no", sa.String(length=32), nullable=False),
        sa.Column("card_kind", sa.String(length=20), nullable=False),
        sa.Column("id_number", sa.String(length=32), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("cancelled_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_cards_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint("card_no", name=op.f("uq_cards_card_no")),
    )
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cards_id_number"), ["id_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_cards_person_id"), ["person_id"], unique=False)

    op.create_table(
        "certifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=15), nullable=False),
        sa.Column("mark", sa.String(length=32), nullable=False),
        sa.Column("certified_on", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_certifications_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_certifications_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certifications")),
    )
    with op.batch_alter_table("certifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certifications_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_certifications_run_id"), ["run_id"], unique=False)

    op.create_table(
        "death_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("id_number", sa.String(length=32), nullable=True),
        sa.Column("id_status", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("died_on", sa.Date(), nullable=False),
        sa.Column("recorded_on", sa.Date(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("match", sa.String(length=13), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=6), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_death_records_delivery_id_deliveries")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_death_records_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_death_records")),
        sa.UniqueConstraint("source", "record_id", name=op.f("uq_death_records_source_record_id")),
    )
    with op.batch_alter_table("death_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_death_records_id_number"), ["id_number"], unique=False)
        batch_op.create_index(batch_op.f("ix_death_records_person_id"), ["person_id"], unique=False)

    op.create_table(
        "deregistrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("id_number", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=True),
        sa.Column("deregistered_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("new_id_number", sa.String(length=32), nullable=True),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_deregistrations_delivery_id_deliveries"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_deregistrations_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deregistrations")),
        sa.UniqueConstraint("record_id", name=op.f("uq_deregistrations_record_id")),
    )
    with op.batch_alter_table("deregistrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deregistrations_id_number"), ["id_number"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_deregistrations_person_id"), ["person_id"], unique=False
        )

    op.create_table(
        "evidence_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("min_day", sa.Date(), nullable=False),
        sa.Column("max_day", sa.Date(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_evidence_parts_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_parts")),
    )
    with op.batch_alter_table("evidence_parts", schema=None) as batch_op:
        batch_op.create_index("ix_evidence_parts_source_month", ["source", "month"], unique=False)

    op.create_table(
        "quarantined_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_quarantined_rows_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_rows")),
    )
    with op.batch_alter_table("quarantined_rows", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantined_rows_delivery_id"), ["delivery_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_quarantined_rows_source"), ["source"], unique=False)

    op.create_table(
        "review_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=17), nullable=False),
        sa.Column("status", sa.String(length=14), nullable=False),
        sa.Column("grid_code", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Float(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("opened_run_id", sa.Integer(), nullable=True),
        sa.Column("closed_run_id", sa.Integer(), nullable=True),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("outcome_detail", sa.JSON(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["closed_run_id"], ["runs.id"], name=op.f("fk_review_tasks_closed_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["opened_run_id"], ["runs.id"], name=op.f("fk_review_tasks_opened_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_review_tasks_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_tasks")),
    )
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_review_tasks_grid_status", ["grid_code", "status", "priority"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_review_tasks_person_id"), ["person_id"], unique=False)

    op.create_table(
        "list_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("benefit_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=9), nullable=False),
        sa.Column("reason", sa.String(length=19), nullable=False),
        sa.Column("effective_on", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("status", sa.String(length=9), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["benefit_id"], ["benefits.id"], name=op.f("fk_list_entries_benefit_id_benefits")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_list_entries_person_id_persons")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_list_entries_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_entries")),
        sa.UniqueConstraint("seq", name=op.f("uq_list_entries_seq")),
    )
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_list_entries_benefit_id"), ["benefit_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_list_entries_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_list_entries_run_id"), ["run_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_entries_run_id"))
        batch_op.drop_index(batch_op.f("ix_list_entries_person_id"))
        batch_op.drop_index(batch_op.f("ix_list_entries_benefit_id"))

    op.drop_table("list_entries")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_tasks_person_id"))
        batch_op.drop_index("ix_review_tasks_grid_status")

    op.drop_table("review_tasks")
    with op.batch_alter_table("quarantined_rows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_rows_source"))
        batch_op.drop_index(batch_op.f("ix_quarantined_rows_delivery_id"))

    op.drop_table("quarantined_rows")
    with op.batch_alter_table("evidence_parts", schema=None) as batch_op:
        batch_op.drop_index("ix_evidence_parts_source_month")

    op.drop_table("evidence_parts")
    with op.batch_alter_table("deregistrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deregistrations_person_id"))
        batch_op.drop_index(batch_op.f("ix_deregistrations_id_number"))

    op.drop_table("deregistrations")
    with op.batch_alter_table("death_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_death_records_person_id"))
        batch_op.drop_index(batch_op.f("ix_death_records_id_number"))

    op.drop_table("death_records")
    with op.batch_alter_table("certifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certifications_run_id"))
        batch_op.drop_index(batch_op.f("ix_certifications_person_id"))

    op.drop_table("certifications")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cards_person_id"))
        batch_op.drop_index(batch_op.f("ix_cards_id_number"))

    op.drop_table("cards")
    with op.batch_alter_table("benefits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_benefits_person_id"))

    op.drop_table("benefits")
    with op.batch_alter_table("assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_assessments_run_id"))
        batch_op.drop_index(batch_op.f("ix_assessments_person_id"))

    op.drop_table("assessments")
    op.drop_table("source_volumes")
    op.drop_table("source_cursors")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_as_of"))

    op.drop_table("runs")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_persons_region_code"))
        batch_op.drop_index("ix_persons_name_birth")
        batch_op.drop_index(batch_op.f("ix_persons_id_number"))
        batch_op.drop_index(batch_op.f("ix_persons_grid_code"))

    op.drop_table("persons")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_source_checksum")

    op.drop_table("deliveries")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_target")

    op.drop_table("audit_log")
    op.drop_table("api_clients")
