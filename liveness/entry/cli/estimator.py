"""`liveness classifier`: train and evaluate the learned estimator from the command line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from liveness.entry.cli.boundary import DAYS_MOST, boundary, migrated_services, print_json

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from liveness.estimator.config import EstimatorConfig
    from liveness.estimator.evaluation import EvaluationReport
    from liveness.services import Services

__all__ = ["classifier_app"]

classifier_app = typer.Typer(
    no_args_is_help=True,
    help="The learned estimator of P(alive): it ranks review queues, it never suspends anyone.",
)
console = Console()


AsOf = Annotated[
    dt.datetime, typer.Option("--as-of", formats=["%Y-%m-%d"], help="Date the features are as of.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")]


@contextmanager
def _estimating() -> Iterator[tuple[Services, EstimatorConfig, Session]]:
    """Yield the services, the estimator's configuration and a session committed at the end."""
    services = migrated_services()
    # scikit-learn loads here, not when the command line starts.
    from liveness.db import session_scope
    from liveness.estimator.service import estimator_config

    with session_scope(services.sessions) as session:
        yield services, estimator_config(services.settings), session


def _print(report: EvaluationReport, *, json_output: bool, extra: dict[str, Any]) -> None:
    if json_output:
        print_json({**extra, **report.as_dict()})
        return
    for key, value in extra.items():
        console.print(f"{key.replace('_', ' ')}: {value}", highlight=False)
    report.render(console)


@classifier_app.command("train")
@boundary
def train(
    as_of: AsOf,
    horizon: Annotated[
        int | None,
        typer.Option(
            "--horizon", min=1, max=DAYS_MOST, help="Days after --as-of in which a death counts."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Train on outcomes after a date, evaluate held-out persons, save a versioned artifact."""
    from liveness.estimator.artifacts import artifacts_dir
    from liveness.estimator.service import train_estimator

    with _estimating() as (services, config, session):
        result = train_estimator(
            session, as_of=as_of.date(), horizon_days=horizon, store=services.store,
            policies=services.policies, config=config,
            folder=artifacts_dir(services.settings),
        )  # fmt: skip
        extra = {"artifact": result.artifact.version, "path": result.artifact.path}
    _print(result.report, json_output=json_output, extra=extra)


@classifier_app.command("evaluate")
@boundary
def evaluate(
    as_of: AsOf,
    artifact: Annotated[
        str | None, typer.Option("--artifact", help="Artifact version (default: the latest).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Evaluate a saved artifact beside the rules on held-out persons as of a date."""
    from liveness.estimator.service import evaluate_artifact

    with _estimating() as (services, config, session):
        report = evaluate_artifact(
            session, as_of=as_of.date(), version=artifact, store=services.store,
            policies=services.policies, config=config,
        )  # fmt: skip
    _print(report, json_output=json_output, extra={})
