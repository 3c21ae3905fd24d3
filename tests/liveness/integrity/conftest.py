"""A simulated city with every integrity pattern planted, ingested once on SQLite."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from liveness.db import session_scope
from liveness.ingest import INGEST_ORDER
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from liveness.simulate.integrity import (
    PlantedIntegrity,
    plant_integrity,
    record_planted_outcomes,
)
from tests.liveness.conftest import CITY_DAYS, CITY_START, REPO

AS_OF = CITY_START + dt.timedelta(days=CITY_DAYS)


@dataclass(frozen=True)
class PlantedCity:
    """Services on a database holding a planted city, and what was planted."""

    services: Services
    planted: PlantedIntegrity
    folder: Path


def load_city(services: Services, folder: Path) -> None:
    """Ingest every source of a city folder in the engine's order."""
    for source in INGEST_ORDER:
        ingest_paths(services, source=source, paths=[folder / source])


@pytest.fixture(scope="module")
def planted_folder(
    city: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, PlantedIntegrity]:
    """Copy the session's city and plant the integrity patterns into the copy."""
    folder = tmp_path_factory.mktemp("planted") / "city"
    shutil.copytree(city, folder)
    return folder, plant_integrity(folder, seed=3)


@pytest.fixture(scope="module")
def planted_city(
    planted_folder: tuple[Path, PlantedIntegrity],
    database_url_factory: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> PlantedCity:
    """Ingest the planted city once per module into a fresh SQLite database."""
    folder, planted = planted_folder
    settings = Settings(
        database_url=database_url_factory("sqlite"),
        evidence_dir=tmp_path_factory.mktemp("evidence"),
        config_dir=REPO / "config",
    )
    services = Services(settings)
    upgrade(services.engine)
    load_city(services, folder)
    with session_scope(services.sessions) as session:
        record_planted_outcomes(session, planted=planted, as_of=AS_OF)
    return PlantedCity(services=services, planted=planted, folder=folder)
