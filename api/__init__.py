"""The HTTP API: app factory, auth and session dependencies, routers."""
