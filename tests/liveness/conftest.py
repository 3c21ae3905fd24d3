"""Fixtures for domain tests: a small simulated city and services on a test database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liveness.entry.cli import app
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings, get_settings
from liveness.simulate import simulate_city

CITY_START = dt.date(2025, 1, 1)
CITY_DAYS = 150
CITY_PERSONS = 1500
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Simulate a small city once per test session and return its folder."""
    out = tmp_path_factory.mktemp("city")
    simulate_city(persons=CITY_PERSONS, start=CITY_START, days=CITY_DAYS, seed=7, out=out)
    return out


# Session-wide: each call migrates a database of its own, so module fixtures may share it.
@pytest.fixture(scope="session")
def services_factory(
    database_url_factory: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Services]:
    """Return a function giving services on a fresh, migrated database of a backend."""

    def create(backend: str) -> Services:
        settings = Settings(
            database_url=database_url_factory(backend),
            evidence_dir=tmp_path_factory.mktemp("evidence"),
            config_dir=REPO / "config",
        )
        services = Services(settings)
        upgrade(services.engine)
        return services

    return create


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Give the environment of CLI invocations on a fresh SQLite database of this test."""
    # The sources' delivery folders are relative to the working directory: none exist here.
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield {
        "LIVENESS_DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}",
        "LIVENESS_EVIDENCE_DIR": str(tmp_path / "evidence"),
        "LIVENESS_CONFIG_DIR": str(REPO / "config"),
    }
    get_settings.cache_clear()


def invoke_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `liveness ARGS...`; return its exit code and output, which never holds a traceback."""
    result = CliRunner().invoke(app, list(args), env=env)
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in output
    return result.exit_code, output
