"""The ASGI application for process managers (uvicorn --workers, gunicorn): api.asgi:app."""

from __future__ import annotations

from api.app import api_services, create_app
from liveness.settings import get_settings

app = create_app(api_services(get_settings()))
