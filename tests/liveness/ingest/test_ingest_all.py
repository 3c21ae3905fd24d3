"""`liveness ingest --all`: every configured source, files by folder and SQL since its watermark."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from liveness.entry.cli import app
from liveness.settings import get_settings
from tests.liveness.conftest import REPO
from tests.liveness.ingest.test_ingest import CARDS, REGISTRY

runner = CliRunner()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A config folder whose registry and cards come from folders and medical from SQL."""
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    inbox = tmp_path / "inbox"
    for source, body in (("registry", REGISTRY), ("cards", CARDS)):
        (inbox / source).mkdir(parents=True)
        (inbox / source / f"{source}.csv").write_text(body)
    medical_db = tmp_path / "medical.sqlite"
    with create_engine(f"sqlite:///{medical_db}").begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE visits (record_id TEXT, id_number TEXT, visit_at TEXT,"
                " institution_code TEXT, visit_type TEXT)"
            )
        )
    (config / "sources.toml").write_text(
        f'[registry]\npath = "{inbox / "registry"}"\n'
        f'[cards]\npath = "{inbox / "cards"}"\n'
        '[medical]\ntransport = "sql"\n[medical.sql]\nurl_secret = "medical_db"\n'
        'table = "visits"\n'
        '[cremation]\nencoding = "gb18030"\n'
    )
    get_settings.cache_clear()
    env = {
        "LIVENESS_DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}",
        "LIVENESS_EVIDENCE_DIR": str(tmp_path / "evidence"),
        "LIVENESS_CONFIG_DIR": str(config),
        "LIVENESS_SECRETS": json.dumps({"medical_db": f"sqlite:///{medical_db}"}),
    }
    yield env, medical_db
    get_settings.cache_clear()


def _visits(database: Path, rows: list[tuple[str, str]]) -> None:
    with create_engine(f"sqlite:///{database}").begin() as connection:
        for record_id, visit_at in rows:
            connection.execute(
                text(
                    "INSERT INTO visits VALUES (:r, '330702194501011230', :v, 'H1', 'outpatient')"
                ),
                {"r": record_id, "v": visit_at},
            )


def _ingest_all(env: dict[str, str]) -> list[dict[str, object]]:
    result = runner.invoke(app, ["ingest", "--all", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_ingest_all_loads_folders_and_pulls_sql_since_the_watermark(
    deployment: tuple[dict[str, str], Path],
) -> None:
    env, medical_db = deployment
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    _visits(medical_db, [("M1", "2025-02-01 09:00:00"), ("M2", "2025-02-02 09:00:00")])

    first = {r["source"]: r for r in _ingest_all(env)}
    assert (first["registry"]["loaded"], first["cards"]["loaded"]) == (3, 3)
    assert (first["medical"]["rows_read"], first["medical"]["loaded"]) == (2, 2)

    _visits(medical_db, [("M3", "2025-02-03 09:00:00")])
    second = {r["source"]: r for r in _ingest_all(env)}
    assert second["registry"]["status"] == "duplicate"
    # Rows at the watermark are read again and dropped as re-deliveries; only M3 is new.
    assert second["medical"]["loaded"] == 1
    assert (
        second["medical"]["loaded"] + second["medical"]["redelivered"]
        == second["medical"]["rows_read"]
    )

    third = {r["source"]: r for r in _ingest_all(env)}
    assert third["medical"]["loaded"] == 0


def test_ingest_all_refuses_a_missing_secret_clearly(
    deployment: tuple[dict[str, str], Path],
) -> None:
    env, _ = deployment
    runner.invoke(app, ["db", "upgrade"], env=env)
    result = runner.invoke(app, ["ingest", "--all"], env={**env, "LIVENESS_SECRETS": "{}"})
    assert result.exit_code != 0
    assert "medical_db" in result.output and "Traceback" not in result.output


def test_ingest_needs_a_source_and_paths_or_all(deployment: tuple[dict[str, str], Path]) -> None:
    env, _ = deployment
    runner.invoke(app, ["db", "upgrade"], env=env)
    result = runner.invoke(app, ["ingest"], env=env)
    assert result.exit_code == 2 and "--all" in result.output
