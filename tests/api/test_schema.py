"""schemathesis against the OpenAPI document: no input makes the server fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from liveness.services import Services
from tests.api.conftest import World, make_world
from tests.liveness.conftest import REPO


@pytest.fixture(scope="module")
def fuzz_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from liveness.migrate import upgrade
    from liveness.settings import Settings

    folder = tmp_path_factory.mktemp("fuzz")
    services = Services(
        Settings(
            database_url=f"sqlite:///{folder / 'state.sqlite'}", evidence_dir=folder / "evidence",
            config_dir=REPO / "config", api_docs=True,
        )
    )  # fmt: skip
    upgrade(services.engine)
    built = make_world(services)
    with built.client:
        yield built
    built.client.app.state.runs.join(timeout=60)  # type: ignore[attr-defined]
    services.engine.dispose()


@pytest.mark.parametrize("role", ["admin", "verifier", "payment", "inspector"])
def test_no_input_makes_the_server_fail(fuzz_world: World, role: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_world.client.app)
    failures: list[str] = []
    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.method.upper() == "POST" and op.path == "/api/v1/runs":
            continue  # starts real runs; covered by the access matrix

        @settings(
            max_examples=8, deadline=None,
            suppress_health_check=list(HealthCheck), database=None,
        )  # fmt: skip
        @given(case=op.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), **fuzz_world.auth(role)}
            response = case.call()
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            if response.status_code >= 400:
                body = response.json()
                assert set(body) == {"error", "detail"}, (case.formatted_path, response.text)

        check()
    assert failures == []
