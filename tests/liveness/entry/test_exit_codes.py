"""The command line's exit codes: one per cause, each in README.md's table."""

from __future__ import annotations

import pytest
import typer
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from api.web.i18n import MessagesInvalid
from connectors import ConfigError, FatalError, MissingColumns, RetriableError, UndecodableFile
from liveness.access import ClientInvalid, Forbidden, Unauthenticated
from liveness.entry.cli.boundary import (
    DATABASE_ERROR,
    FILE_ERROR,
    INTERNAL_ERROR,
    NIGHT_FAILED,
    STOPPED_BY_GUARD,
    boundary,
)
from liveness.errors import (
    ConfigurationError,
    DeliveryRefused,
    Hidden,
    InputInvalid,
    LivenessError,
    NotFound,
    RollMissing,
    RunRefused,
    SchemaOutdated,
    StateRefused,
)
from liveness.estimator.dataset import EstimatorError
from liveness.lists.service import ApprovalRefused
from liveness.simulate.integrity import CityTooSmall
from liveness.views.lists import AckRefused
from liveness.views.queue import ViewInvalid
from tests.liveness.conftest import invoke_cli
from tests.liveness.test_errors import engine_errors, readme_table

USAGE = 2  # Click's own, for a command line that does not parse


def exit_code_of(error: BaseException) -> int:
    """Return the exit code of a command, behind the boundary, that raises `error`."""
    app = typer.Typer()

    @app.command()
    @boundary
    def fails() -> None:
        raise error

    result = CliRunner().invoke(app, [])
    assert "Traceback" not in result.output
    return result.exit_code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LivenessError("no code of its own"), 1),
        (typer.BadParameter("not a month"), USAGE),
        (DeliveryRefused("refused"), 3),
        (UndecodableFile("t.csv", encoding="utf-8", offset=3, detail="bad byte"), 3),
        (MissingColumns("t.csv", source="transit", columns=["card_no"]), 3),
        (RetriableError("time-out", origin="db"), 3),
        (FatalError("no table", origin="db"), 3),
        (RollMissing("no roll"), 4),
        (RunRefused("locked"), 5),
        (SchemaOutdated("migrate"), 6),
        (StateRefused("claimed"), 8),
        (ApprovalRefused("own entry", why="own_entry"), 8),
        (AckRefused("backwards"), 8),
        (ViewInvalid("no such status"), 11),
        (CityTooSmall("too few deaths"), 15),
        (MessagesInvalid("no en"), 10),
        (Unauthenticated("no token"), 9),
        (Forbidden("not your grid"), 9),
        (ConfigurationError("bad setting"), 10),
        (ConfigError("must be a table", source="transit"), 10),
        (InputInvalid("bad value"), 11),
        (ClientInvalid("no grid"), 11),
        (EstimatorError("too few deaths"), 12),
        (NotFound("no run 7"), 13),
        (Hidden("no run 7"), 13),
        (RuntimeError("a bug"), INTERNAL_ERROR),
        (FileNotFoundError(2, "No such file or directory", "/no/such"), FILE_ERROR),
        (PermissionError(13, "Permission denied", "/root/x"), FILE_ERROR),
        (OperationalError("SELECT 1", {}, Exception("database is locked")), DATABASE_ERROR),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_the_boundary_exits_with_the_code_of_the_cause(error: BaseException, code: int) -> None:
    """Each error leaves the command with its cause's code, a connector's as any engine error's."""
    assert exit_code_of(error) == code


def test_the_readme_table_holds_every_exit_code_and_no_other() -> None:
    """One table, every code: each error's, Click's usage error, and the boundary's own."""
    own = {USAGE, STOPPED_BY_GUARD, NIGHT_FAILED, INTERNAL_ERROR, FILE_ERROR, DATABASE_ERROR}
    errors = {error.exit_code for error in engine_errors()}
    assert not own & errors, "a code of the boundary's is no error's"
    assert set(readme_table()) == own | errors


def test_an_object_not_found_exits_13(cli_env: dict[str, str]) -> None:
    """`liveness clients revoke` of a client that does not exist: NotFound's own code."""
    assert invoke_cli(cli_env, "db", "upgrade")[0] == 0
    code, output = invoke_cli(cli_env, "clients", "revoke", "nobody")
    assert code == 13
    assert "no API client named 'nobody'" in output


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("LIVENESS_TIMEZONE", "Mars/Base", "no time zone named 'Mars/Base'"),
        ("LIVENESS_DATABASE_URL", "nosuch://x", "the engine runs on sqlite or postgresql"),
        ("LIVENESS_DATABASE_URL", "garbage", "not a database URL"),
        ("LIVENESS_API_CLAIM_MINUTES", "-5", "greater than or equal to 1"),
    ],
)
def test_a_wrong_setting_names_its_variable_and_exits_10(
    cli_env: dict[str, str], variable: str, value: str, words: str
) -> None:
    """A setting is checked when read: named with its reason, never a traceback later on."""
    code, output = invoke_cli({**cli_env, variable: value}, "runs")
    assert code == 10, output
    assert f"error: {variable}: " in output and words in " ".join(output.split())


def test_a_database_that_cannot_be_reached_exits_75(cli_env: dict[str, str]) -> None:
    """Nothing listens on the port: the driver's reason, not an internal error."""
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    code, output = invoke_cli({**cli_env, "LIVENESS_DATABASE_URL": url}, "runs")
    assert code == 75, output
    assert "error: the database could not do the work:" in output
