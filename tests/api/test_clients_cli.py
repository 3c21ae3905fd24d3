"""`liveness clients`: create shows the token once, list never shows it, revoke refuses it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import get_args

import pyotp
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from liveness.access import authenticate
from liveness.db import session_scope
from liveness.entry.cli.access import RoleName, clients_app, console
from liveness.services import Services
from models import ApiClient, ClientSecret, Role, utcnow


@pytest.fixture
def services(
    services_factory: Callable[[str], Services], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    """Give SQLite services that the `liveness clients` commands find through the environment."""
    from liveness.settings import get_settings

    built = services_factory("sqlite")
    settings = built.settings
    monkeypatch.setenv("LIVENESS_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LIVENESS_EVIDENCE_DIR", str(settings.evidence_dir))
    monkeypatch.setenv("LIVENESS_CONFIG_DIR", str(settings.config_dir))
    get_settings.cache_clear()
    yield built
    get_settings.cache_clear()
    built.engine.dispose()


def test_create_list_revoke(services: Services) -> None:
    runner = CliRunner()
    created = runner.invoke(
        clients_app, ["create", "--name", "gw-1", "--role", "grid_worker", "--grid", "G1",
                      "--grid", "G2", "--expires-days", "30"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    # Nobody is on this roll yet: created all the same, with a warning naming each grid.
    assert "nobody on the roll is in grid 'G1'" in created.output
    assert "nobody on the roll is in grid 'G2'" in created.output
    token = next(line for line in created.output.splitlines() if line.startswith("lv_"))
    # A grid code matches the roll's exactly: empty or padded, it would match nobody.
    for grid in ("", " G1", "G1 ", "G\t1", "G" * 33):
        padded = runner.invoke(
            clients_app, ["create", "--name", "gw-x", "--role", "grid_worker", "--grid", grid]
        )
        assert padded.exit_code == 11, (grid, padded.output)
        assert "is not a grid code" in padded.output
    verifier = runner.invoke(clients_app, ["create", "--name", "face", "--role", "verifier"])
    assert verifier.exit_code == 0, verifier.output
    assert "signing secret" in verifier.output
    refused = runner.invoke(clients_app, ["create", "--name", "gw-2", "--role", "grid_worker"])
    assert refused.exit_code == 11
    duplicate = runner.invoke(clients_app, ["create", "--name", "face", "--role", "auditor"])
    assert duplicate.exit_code == 11
    listed = runner.invoke(clients_app, ["list"])
    assert listed.exit_code == 0
    assert "gw-1" in listed.output and token not in listed.output
    with session_scope(services.sessions) as session:
        stored = session.query(ApiClient).filter_by(name="gw-1").one()
        assert stored.token_hash != token and len(stored.token_hash) == 64
        assert stored.grids == ["G1", "G2"]
        assert session.query(ClientSecret).count() == 1
    api = TestClient(create_app(services))
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/grids/G1/tasks", headers=headers).status_code == 200
    assert runner.invoke(clients_app, ["revoke", "gw-1"]).exit_code == 0
    assert api.get("/api/v1/grids/G1/tasks", headers=headers).status_code == 401
    assert runner.invoke(clients_app, ["revoke", "nobody"]).exit_code == 13


def test_an_inspector_is_scoped_to_regions(services: Services) -> None:
    runner = CliRunner()
    refused = {
        "no region": ["--name", "i0", "--role", "inspector"],
        "a region that is no code": ["--name", "i1", "--role", "inspector", "--region", "33010"],
        "a region for another role": ["--name", "o1", "--role", "operator", "--region", "3301"],
        "a grid for an inspector": ["--name", "i2", "--role", "inspector", "--region", "3301",
                                    "--grid", "G1"],
    }  # fmt: skip
    for why, args in refused.items():
        result = runner.invoke(clients_app, ["create", *args])
        assert result.exit_code == 11, (why, result.output)
        assert "Traceback" not in result.output
    no_region = runner.invoke(clients_app, ["create", "--name", "i0", "--role", "inspector"])
    assert "region: an inspector needs at least one --region" in no_region.output
    created = runner.invoke(
        clients_app, ["create", "--name", "insp", "--role", "inspector", "--region", "330702",
                      "--region", "3310"],
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    token = next(line for line in created.output.splitlines() if line.startswith("lv_"))
    listed = runner.invoke(clients_app, ["list"])
    assert "330702, 3310" in listed.output
    with session_scope(services.sessions) as session:
        stored = session.query(ApiClient).filter_by(name="insp").one()
        assert stored.regions == ["330702", "3310"] and stored.grids == []
        assert authenticate(session, token=token, now=utcnow()).regions == ("330702", "3310")
    api = TestClient(create_app(services))
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/v1/orders", headers=headers).status_code == 200
    assert api.get("/api/v1/leads?region=331001", headers=headers).status_code == 200
    assert api.get("/api/v1/leads?region=330782", headers=headers).status_code == 403
    assert api.get("/api/v1/grids/G1/tasks", headers=headers).status_code == 403


def test_the_administrator_sets_a_password_and_a_one_time_code(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liveness.access import Attempt, check_code, check_password
    from models import AuditEntry, ClientPassword

    runner = CliRunner()
    policy = services.sign_in_policy
    from api.web.pages import HOME_BY_ROLE as PAGES

    created = runner.invoke(
        clients_app, ["create", "--name", "wang.li", "--role", "grid_worker", "--grid", "G1"]
    )
    assert created.exit_code == 0, created.output
    # Asked twice, never echoed, never on the command line.
    typed = runner.invoke(
        clients_app, ["password", "wang.li"], input="walk the grid 7\nwalk the grid 7\n"
    )
    assert typed.exit_code == 0, typed.output
    assert "walk the grid 7" not in typed.output and "password of wang.li set" in typed.output
    mismatch = runner.invoke(
        clients_app,
        ["password", "wang.li"],
        input="one password\nanother one\none password\none password\n",
    )
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output
    piped = runner.invoke(
        clients_app, ["password", "wang.li", "--password-stdin"], input="from a script 9\n"
    )
    assert piped.exit_code == 0, piped.output
    short = runner.invoke(clients_app, ["password", "wang.li", "--password-stdin"], input="short\n")
    assert short.exit_code == 11 and "at least" in short.output and "Traceback" not in short.output
    unknown = runner.invoke(
        clients_app, ["password", "nobody", "--password-stdin"], input="from a script 9\n"
    )
    assert unknown.exit_code == 13 and "no API client named 'nobody'" in unknown.output
    now = utcnow()
    with session_scope(services.sessions) as session:
        row = session.query(ClientPassword).one()
        assert (
            row.password_hash.startswith("$argon2id$") and "from a script" not in row.password_hash
        )
        signed = check_password(
            session, name="wang.li", password="from a script 9", policy=policy, roles=PAGES, now=now
        )
        assert signed.attempt == Attempt.SIGNED_IN
    code = runner.invoke(clients_app, ["code", "wang.li"])
    assert code.exit_code == 0, code.output
    secret, uri = code.output.strip().splitlines()[-2:]
    assert uri.startswith("otpauth://totp/liveness:wang.li?secret=" + secret)
    with session_scope(services.sessions) as session:
        first = check_password(
            session, name="wang.li", password="from a script 9", policy=policy, roles=PAGES, now=now
        )
        assert first.attempt == Attempt.CODE_REQUIRED and first.client_id is not None
        done = check_code(
            session,
            client_id=first.client_id,
            code=pyotp.TOTP(secret).at(now),
            policy=policy,
            roles=PAGES,
            now=now,
        )
        assert done.attempt == Attempt.SIGNED_IN
        for _ in range(policy.max_failures):
            check_password(
                session, name="wang.li", password="a guess", policy=policy, roles=PAGES, now=now
            )
    monkeypatch.setattr(console, "width", 200)  # a wide table: no cell is wrapped
    listed = runner.invoke(clients_app, ["list"])
    assert "password+code" in listed.output and "locked until" in listed.output
    assert runner.invoke(clients_app, ["unlock", "wang.li"]).exit_code == 0
    assert runner.invoke(clients_app, ["code", "wang.li", "--off"]).exit_code == 0
    with session_scope(services.sessions) as session:
        again = check_password(
            session, name="wang.li", password="from a script 9", policy=policy, roles=PAGES, now=now
        )
        assert again.attempt == Attempt.SIGNED_IN
        actions = [
            e.action
            for e in session.query(AuditEntry).filter_by(actor="cli").order_by(AuditEntry.id)
        ]
    assert actions == ["clients.password", "clients.password", "clients.password",
                       "clients.code_on", "clients.unlock", "clients.code_off"]  # fmt: skip


def test_the_command_line_offers_every_role() -> None:
    # The command line repeats the roles so that it starts without SQLAlchemy.
    assert get_args(RoleName) == tuple(Role)
