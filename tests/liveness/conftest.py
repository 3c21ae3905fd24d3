"""Fixtures for domain tests: a small simulated city and services on a test database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from liveness.app import Services
from liveness.migrate import upgrade
from liveness.settings import Settings
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


@pytest.fixture
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
