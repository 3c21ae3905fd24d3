"""`liveness serve`: the API on uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from liveness.entry.cli.boundary import FILE_ERROR, errors

__all__ = ["serve_command"]

# uvicorn.server's exit status when it cannot start (it cannot bind the address, say).
UVICORN_STARTUP_FAILURE = 3


def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the API (/api/v1; /docs if LIVENESS_API_DOCS) over the configured database."""
    import uvicorn

    from api.app import api_services, create_app
    from liveness.settings import get_settings

    services = api_services(get_settings())
    services.require_schema()
    try:
        if workers == 1:
            uvicorn.run(create_app(services), host=host, port=port, log_level="info")
            return
        uvicorn.run(
            "api.asgi:app", host=host, port=port, workers=workers, factory=False, log_level="info"
        )
    except SystemExit as stop:
        if stop.code != UVICORN_STARTUP_FAILURE:
            raise
        # Uvicorn exits 3 when it cannot listen, which is our exit code of a refused delivery.
        errors.print(
            f"error: cannot listen on {host}:{port}: the address is in use or not this "
            "machine's (uvicorn's reason is above)",
            highlight=False,
        )
        raise typer.Exit(FILE_ERROR) from None
