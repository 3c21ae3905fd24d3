"""The ASGI application for process managers (uvicorn --workers, gunicorn): api.asgi:app."""

from __future__ import annotations

from api.app import create_app
from liveness.app import Services
from liveness.settings import get_settings

app = create_app(Services(get_settings()))
