"""roll changes: a log of the persons whose roll row changed, and the roll kept for the run

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What the snapshot's roll reads: a change of anything else in these tables is not logged.
PERSON_COLUMNS = "id, person_ref, grid_code, region_code"
BENEFIT_COLUMNS = "person_id, benefit_type, monthly_amount, status"
# (table, column naming the person, columns whose update is a change of the roll)
WATCHED = [("persons", "id", PERSON_COLUMNS), ("benefits", "person_id", BENEFIT_COLUMNS)]


def _sqlite_triggers() -> list[str]:
    statements = []
    for table, person, columns in WATCHED:
        name = f"roll_changes_{table}"
        log = "INSERT INTO roll_changes (person_id) VALUES"
        statements += [
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {log} (NEW.{person}); END",
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {columns} ON {table} "
            f"BEGIN {log} (OLD.{person}); {log} (NEW.{person}); END",
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN {log} (OLD.{person}); END",
        ]
    return statements


def _postgresql_triggers() -> list[str]:
    statements = []
    for table, person, columns in WATCHED:
        name = f"roll_changes_{table}"
        # txid_current(): the reader knows which transactions it may not have seen yet.
        # Inserts and deletes are logged once per statement from its transition table (a
        # bulk load pays one INSERT ... SELECT); an update of watched columns row by row
        # (a transition table cannot go with a column list).
        statements += [
            f"""CREATE FUNCTION {name}_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO roll_changes (person_id, xact_id) SELECT {person}, txid_current() FROM changed;
    RETURN NULL;
END $$""",
            f"""CREATE FUNCTION {name}_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO roll_changes (person_id, xact_id) VALUES (OLD.{person}, txid_current());
    IF NEW.{person} IS DISTINCT FROM OLD.{person} THEN
        INSERT INTO roll_changes (person_id, xact_id) VALUES (NEW.{person}, txid_current());
    END IF;
    RETURN NULL;
END $$""",
            f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS "
            f"changed FOR EACH STATEMENT EXECUTE FUNCTION {name}_rows()",
            f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS "
            f"changed FOR EACH STATEMENT EXECUTE FUNCTION {name}_rows()",
            f"CREATE TRIGGER {name}_update AFTER UPDATE OF {columns} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}_row()",
        ]
    return statements


def upgrade() -> None:
    op.create_table(
        "roll_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("xact_id", sa.BigInteger(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_roll_changes_xact_id", "roll_changes", ["xact_id"])
    op.create_table(
        "roll_cache",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("mark", sa.BigInteger(), nullable=False),
        sa.Column("persons", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # The content is compressed Parquet already: storing it without TOAST compression
        # saves the time of compressing it again.
        op.execute("ALTER TABLE roll_cache ALTER COLUMN content SET STORAGE EXTERNAL")
    statements = _postgresql_triggers() if dialect == "postgresql" else _sqlite_triggers()
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, _, _ in WATCHED:
        name = f"roll_changes_{table}"
        for event in ("insert", "update", "delete"):
            on = f" ON {table}" if dialect == "postgresql" else ""
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{event}{on}")
        if dialect == "postgresql":
            op.execute(f"DROP FUNCTION IF EXISTS {name}_rows()")
            op.execute(f"DROP FUNCTION IF EXISTS {name}_row()")
    op.drop_table("roll_cache")
    op.drop_index("ix_roll_changes_xact_id", table_name="roll_changes")
    op.drop_table("roll_changes")
