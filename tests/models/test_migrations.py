from collections.abc import Callable

import pytest
from sqlalchemy import Connection, inspect, select, text

from liveness.db import make_engine
from liveness.migrate import current_revision, downgrade, upgrade
from models import ApiClient, Base, assessments_as_of


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_migrations_create_every_table_and_downgrade_cleanly(
    backend_name: str, database_url_factory: Callable[[str], str]
) -> None:
    engine = make_engine(database_url_factory(backend_name))
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == "0018"
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_migrated_schema_matches_the_tables(session) -> None:  # type: ignore[no-untyped-def]
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    context = MigrationContext.configure(session.connection())
    assert compare_metadata(context, Base.metadata) == []


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_0006_gives_existing_clients_no_regions(
    backend_name: str, database_url_factory: Callable[[str], str]
) -> None:
    engine = make_engine(database_url_factory(backend_name))
    upgrade(engine, "0005")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_clients (name, role, grids, token_hash, created_at)"
                " VALUES ('old', 'operator', '[]', 'h', CURRENT_TIMESTAMP)"
            )
        )
    upgrade(engine)
    assert current_revision(engine) == "0018"
    with engine.connect() as connection:
        regions = connection.execute(
            select(ApiClient.regions).where(ApiClient.name == "old")
        ).scalar_one()
    assert regions == []
    downgrade(engine, "0005")
    assert "regions" not in {c["name"] for c in inspect(engine).get_columns("api_clients")}
    engine.dispose()


def _insert_person(connection: Connection) -> None:
    """Insert one person, P1, in raw SQL (the schema of any revision since 0001 takes it)."""
    connection.execute(
        text(
            "INSERT INTO persons (person_ref, id_number, id_status, name, sex, birth_date,"
            " region_code, grid_code, created_at, updated_at) VALUES ('P1',"
            " '330702194501011230', 'valid', '张三', 'M', '1945-01-01', '330702', 'G1',"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
    )


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_0015_leaves_existing_visits_unplanned(
    backend_name: str, database_url_factory: Callable[[str], str]
) -> None:
    engine = make_engine(database_url_factory(backend_name))
    upgrade(engine, "0014")
    with engine.begin() as connection:
        _insert_person(connection)
        connection.execute(
            text(
                "INSERT INTO review_tasks (person_id, kind, status, grid_code, priority,"
                " opened_on, due_on, reasons, outcome_detail, created_at)"
                " SELECT id, 'home_visit', 'open', 'G1', 1.0, '2025-04-01', '2025-05-01',"
                " '{}', '{}', CURRENT_TIMESTAMP FROM persons"
            )
        )
    upgrade(engine)
    assert current_revision(engine) == "0018"
    with engine.connect() as connection:
        # A visit opened before planning has no week: it counts in the current one.
        assert connection.execute(text("SELECT planned_week FROM review_tasks")).all() == [(None,)]
    downgrade(engine, "0014")
    assert "planned_week" not in {c["name"] for c in inspect(engine).get_columns("review_tasks")}
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM review_tasks")).scalar_one() == 1
    engine.dispose()


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_0016_keeps_every_stored_assessment_standing(
    backend_name: str, database_url_factory: Callable[[str], str]
) -> None:
    engine = make_engine(database_url_factory(backend_name))
    upgrade(engine, "0015")
    with engine.begin() as connection:
        _insert_person(connection)
        for run_id, level in ((1, "medium"), (2, "strong")):
            connection.execute(
                text(
                    "INSERT INTO runs (id, as_of, status, policy_version, started_at, report)"
                    " VALUES (:id, '2025-07-01', 'published', 'p', CURRENT_TIMESTAMP, '{}')"
                ),
                {"id": run_id},
            )
            connection.execute(
                text(
                    "INSERT INTO assessments (run_id, person_id, level, score, rule, reasons,"
                    " policy_version, created_at) SELECT :run, id, :level, 0.5, 'r', '{}', 'p',"
                    " CURRENT_TIMESTAMP FROM persons"
                ),
                {"run": run_id, "level": level},
            )
    upgrade(engine)
    with engine.connect() as connection:
        # Runs before the change stored everyone: each run's own rows are what stood then.
        for run_id, level in ((1, "medium"), (2, "strong")):
            standing = assessments_as_of(run_id)
            assert connection.execute(select(standing.level, standing.gist)).all() == [
                (level, None)
            ]
    downgrade(engine, "0015")
    assert "graded" not in {c["name"] for c in inspect(engine).get_columns("assessments")}
    engine.dispose()
