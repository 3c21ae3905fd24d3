"""roll changes: a benefit's last certification on the roll is logged as a change too

The run keeps, beside the roll, each benefit's last certification from the roll (what carries a
person's certification over until the engine records one), and re-reads only the persons the
change log names. A roll delivery that moves `last_certified_on` alone must therefore be
logged: the benefits' update trigger now watches that column as well.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "roll_changes_benefits"
BEFORE = "person_id, benefit_type, monthly_amount, status"
AFTER = f"{BEFORE}, last_certified_on"


def _replace_update_trigger(columns: str) -> None:
    """Recreate the benefits' update trigger of migration 0007 watching `columns`."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {NAME}_update ON benefits")
        op.execute(
            f"CREATE TRIGGER {NAME}_update AFTER UPDATE OF {columns} ON benefits "
            f"FOR EACH ROW EXECUTE FUNCTION {NAME}_row()"
        )
        return
    log = "INSERT INTO roll_changes (person_id) VALUES"
    op.execute(f"DROP TRIGGER IF EXISTS {NAME}_update")
    op.execute(
        f"CREATE TRIGGER {NAME}_update AFTER UPDATE OF {columns} ON benefits "
        f"BEGIN {log} (OLD.person_id); {log} (NEW.person_id); END"
    )


def upgrade() -> None:
    _replace_update_trigger(AFTER)


def downgrade() -> None:
    _replace_update_trigger(BEFORE)
