"""Train and evaluate on the simulated city (SQLite), through the services and the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from liveness.certification.run import certify
from liveness.db import session_scope
from liveness.entry.cli.estimator import classifier_app
from liveness.entry.demo import INGEST_ORDER
from liveness.estimator import (
    EstimatorError,
    TrainingResult,
    alive_probability,
    artifacts_dir,
    build_dataset,
    demo_evaluation,
    estimator_config,
    evaluate_artifact,
    load_artifact,
    train_estimator,
)
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings, get_settings
from models import Certification
from tests.liveness.conftest import CITY_START, REPO

# Early in the 150-day city, with a long horizon: enough deaths to train and hold out.
TRAIN_AS_OF = CITY_START + dt.timedelta(days=30)
HORIZON = 119


@pytest.fixture(scope="module")
def city_services(
    city: Path,
    database_url_factory: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Services:
    # services_factory("sqlite"), once for the module: ingesting the city takes seconds.
    settings = Settings(
        database_url=database_url_factory("sqlite"),
        evidence_dir=tmp_path_factory.mktemp("data") / "evidence",
        config_dir=REPO / "config",
    )
    services = Services(settings)
    upgrade(services.engine)
    # The built-in sources without the civil registry's notices: with deaths known within a
    # day, this small city leaves too few unknown deaths to hold out and rank (the held-out
    # ROC AUC fell to 0.47; on the demo's 20,000 persons it is 0.67 with the notices).
    for source in INGEST_ORDER:
        if source != "registry_notice":
            ingest_paths(services, source=source, paths=[city / source])
    return services


def _train(services: Services) -> TrainingResult:
    """Train and save an artifact on the city as of TRAIN_AS_OF (the same one every time)."""
    with session_scope(services.sessions) as session:
        return train_estimator(
            session, as_of=TRAIN_AS_OF, horizon_days=HORIZON, store=services.store,
            policies=services.policies, config=estimator_config(services.settings),
            folder=artifacts_dir(services.settings),
        )  # fmt: skip


def test_train_evaluate_and_reload(city_services: Services) -> None:
    services = city_services
    config = estimator_config(services.settings)
    result = _train(services)
    report = result.report
    assert report.dead >= 3
    assert report.metrics["estimator"]["roc_auc"] > 0.5
    assert set(report.metrics) == {"estimator", "rules"}
    assert {"estimator_dead", "rules_dead"} <= set(report.confusion.columns)
    assert int(report.confusion["rules_alive"].sum() + report.confusion["rules_dead"].sum()) == (
        report.persons
    )
    assert report.calibration["mean_predicted"].between(0, 1).all()
    assert report.calibration["persons"].sum() == report.persons

    artifact = result.artifact
    assert Path(artifact.path).parent == services.settings.evidence_dir.resolve().parent / (
        "artifacts"
    )
    assert artifact.metrics["estimator"]["roc_auc"] == pytest.approx(
        report.metrics["estimator"]["roc_auc"], abs=1e-6
    )
    assert "age_years" in artifact.feature_names

    with session_scope(services.sessions) as session:
        loaded = load_artifact(session, version=artifact.version)
        dataset = build_dataset(
            session, as_of=TRAIN_AS_OF, horizon_days=HORIZON, store=services.store,
            scoring=services.policies.scoring, health=services.policies.health, age=config.age,
        )  # fmt: skip
        again = evaluate_artifact(
            session, as_of=TRAIN_AS_OF, store=services.store, policies=services.policies,
            config=config,
        )  # fmt: skip
    p = alive_probability(loaded.estimator, dataset.features)
    assert ((p >= 0) & (p <= 1)).all()
    assert again.metrics == report.metrics
    assert again.artifact_version == artifact.version

    console = Console(record=True, width=120)
    report.render(console)
    text = console.export_text()
    assert "ROC AUC" in text and "rules" in text and "calibration" in text


def test_demo_evaluation_out_of_time(city_services: Services) -> None:
    report = demo_evaluation(
        city_services, train_as_of=TRAIN_AS_OF, evaluate_as_of=TRAIN_AS_OF + dt.timedelta(days=30),
        horizon_days=60,
    )  # fmt: skip
    assert report.persons > 0
    assert report.metrics["rules"]["brier"] >= 0


def test_labels_beyond_the_evidence_are_refused(city_services: Services) -> None:
    services = city_services
    with session_scope(services.sessions) as session, pytest.raises(EstimatorError, match="need"):
        build_dataset(
            session, as_of=CITY_START + dt.timedelta(days=100), horizon_days=90,
            store=services.store, scoring=services.policies.scoring,
            health=services.policies.health, age=True,
        )  # fmt: skip
    # Before the evidence begins, nothing is known of anyone: said so, not "0 deaths among
    # 13,795 training persons ... choose an earlier date".
    with (
        session_scope(services.sessions) as session,
        pytest.raises(EstimatorError, match="no evidence exists yet"),
    ):
        build_dataset(
            session, as_of=dt.date(1900, 1, 1), horizon_days=90, store=services.store,
            scoring=services.policies.scoring, health=services.policies.health, age=True,
        )  # fmt: skip


@pytest.fixture
def cli_env(city_services: Services) -> Iterator[dict[str, str]]:
    get_settings.cache_clear()
    settings = city_services.settings
    yield {
        "LIVENESS_DATABASE_URL": settings.database_url,
        "LIVENESS_EVIDENCE_DIR": str(settings.evidence_dir),
        "LIVENESS_CONFIG_DIR": str(settings.config_dir),
    }
    get_settings.cache_clear()


def test_cli_train_and_evaluate(cli_env: dict[str, str]) -> None:
    root = typer.Typer()
    root.add_typer(classifier_app, name="classifier")
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(root, ["classifier", *args], env=cli_env)
        output = result.output + (result.stderr if result.stderr_bytes is not None else "")
        assert "Traceback" not in output
        return result.exit_code, output

    code, output = invoke("train", "--as-of", TRAIN_AS_OF.isoformat(), "--horizon", str(HORIZON))
    assert code == 0, output
    assert "ROC AUC" in output and "rules" in output
    code, output = invoke("evaluate", "--as-of", TRAIN_AS_OF.isoformat(), "--json")
    assert code == 0, output
    data = json.loads(output)
    assert data["metrics"]["estimator"]["roc_auc"] > 0.5
    assert np.isfinite(data["metrics"]["rules"]["brier"])
    code, output = invoke("evaluate", "--as-of", "2025-05-01")
    assert code == 12 and "evidence reaches" in output
    code, output = invoke("evaluate", "--as-of", "2025-02-01", "--artifact", "nope")
    assert code == 12 and "nope" in output


def test_the_run_certifies_by_the_estimator_within_its_guardrails(
    city_services: Services,
) -> None:
    services = city_services
    config = estimator_config(services.settings)
    version = _train(services).artifact.version
    # Enabled, with the ROC AUC floor at chance: a small city trains a modest estimator.
    enabled = dataclasses.replace(config, certify_enabled=True, certify_min_roc_auc=0.5)
    policies = dataclasses.replace(services.policies, estimator=enabled)
    as_of = CITY_START + dt.timedelta(days=120)
    with session_scope(services.sessions) as session:
        run = certify(session, as_of=as_of, store=services.store, policies=policies)
        report = dict(run.report)
        evidence = [
            e for e in session.scalars(
                select(Certification.evidence).where(Certification.run_id == run.id)
            ) if e.get("by") == "estimator"
        ]  # fmt: skip
    assert report["estimator"]["artifact"] == version, report["estimator"]
    # Medium and weak persons in their renewal window, with a recent own-body trace.
    assert report["certified_by_estimator"] > 0
    assert report["certified_by_estimator"] == len(evidence) == report["estimator"]["certified"]
    assert report["certified_silently"] >= len(evidence)
    for item in evidence:
        assert item["artifact"] == version and item["probability"] >= 0.995
        assert item["level"] in ("medium", "weak")
        assert item["own_body"]["kind"] in enabled.own_body_kinds
        age = (as_of - dt.date.fromisoformat(item["own_body"]["day"])).days
        assert 0 <= age < enabled.own_body_days
