"""Ingest as a boundary: each delivery (a file, or a pull) is loaded in a transaction of its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, TextColumn

from liveness.db import session_scope
from liveness.errors import ConfigurationError
from liveness.ingest.context import DeliveryReport
from liveness.ingest.relink import LINK_SOURCES, RelinkReport, relink, relink_pending
from liveness.ingest.service import delivery_files, ingest_delivery, ingest_order, ingest_pull
from liveness.services import Services


def ingest_paths(
    services: Services,
    *,
    source: str,
    paths: list[Path],
    format: str | None = None,
    encoding: str | None = None,
    show_progress: bool = False,
    console: Console | None = None,
    relink: bool = True,
) -> list[DeliveryReport]:
    """Ingest every file under `paths`, each delivery in a transaction of its own.

    After a roll or card delivery, evidence that matched nobody is linked again (`relink`).
    """
    services.require_schema()
    if source not in services.source_configs:
        raise ConfigurationError(
            f"unknown source {source!r}; known sources: {', '.join(services.source_configs)}"
        )
    context = services.ingest_context()
    files = delivery_files(paths)
    reports = []
    columns = (*Progress.get_default_columns(), TextColumn("{task.fields[rows]:,} rows"))
    with Progress(*columns, console=console, disable=not show_progress) as progress:
        task = progress.add_task(f"ingesting {source}", total=len(files), rows=0)

        def advance_rows(rows: int) -> None:
            progress.update(task, rows=progress.tasks[task].fields["rows"] + rows)

        for path in files:
            progress.update(task, description=f"{source}: {path.name}")
            with session_scope(services.sessions) as session:
                reports.append(
                    ingest_delivery(
                        session, source=source, path=path, context=context, format=format,
                        encoding=encoding, on_batch=advance_rows,
                    )
                )  # fmt: skip
            progress.advance(task)
    if relink and source in LINK_SOURCES:
        relink_if_pending(services)
    return reports


def relink_if_pending(services: Services) -> RelinkReport | None:
    """Relink stored evidence in a transaction of its own if the roll or cards changed."""
    with session_scope(services.sessions) as session:
        if not relink_pending(session):
            return None
        return relink(
            session,
            store=services.store,
            demographic_confidence=services.certification_policy.demographic_confidence,
            links=services.trace_links,
        )


def ingest_all(
    services: Services,
    *,
    show_progress: bool = False,
    console: Console | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> list[DeliveryReport]:
    """Load every configured source: new files in its folder, or a pull since its watermark.

    Once the roll and the cards are in, if they changed, what matched nobody is linked again.
    """
    services.require_schema()
    reports: list[DeliveryReport] = []
    ordered = ingest_order(services.source_configs)
    for source in ordered:
        if source not in LINK_SOURCES:
            # The roll and cards are in: what came before them links now, and what comes
            # next links as it loads.
            relink_if_pending(services)
        config = services.source_configs[source]
        if config.transport != "files":
            context = services.ingest_context()
            with session_scope(services.sessions) as session:
                reports.append(
                    ingest_pull(
                        session, source=source, context=context,
                        secrets=services.settings.secret_values(),
                    )
                )  # fmt: skip
            continue
        folder = Path(config.path) if config.path else None
        if folder is None or not folder.is_dir():
            warn(f"{source}: no delivery folder {folder}; skipped")
            continue
        # Files already loaded are recognised by their checksum and change nothing.
        reports += ingest_paths(
            services, source=source, paths=[folder], show_progress=show_progress,
            console=console, relink=False,
        )  # fmt: skip
    relink_if_pending(services)  # when only the roll or the cards are configured
    return reports
