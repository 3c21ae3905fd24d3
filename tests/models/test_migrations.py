from collections.abc import Callable

import pytest
from sqlalchemy import inspect, select, text

from liveness.db import make_engine
from liveness.migrate import current_revision, downgrade, upgrade
from models import ApiClient, Base


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_migrations_create_every_table_and_downgrade_cleanly(
    backend_name: str, database_url_factory: Callable[[str], str]
) -> None:
    engine = make_engine(database_url_factory(backend_name))
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == "0015"
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
    assert current_revision(engine) == "0015"
    with engine.connect() as connection:
        regions = connection.execute(
            select(ApiClient.regions).where(ApiClient.name == "old")
        ).scalar_one()
    assert regions == []
    downgrade(engine, "0005")
    assert "regions" not in {c["name"] for c in inspect(engine).get_columns("api_clients")}
    engine.dispose()
