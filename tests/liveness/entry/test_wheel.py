"""The engine as a wheel: installed (not editable) into a fresh environment, it runs anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.liveness.conftest import REPO

pytestmark = pytest.mark.slow
# The wheel's own environment: no PYTHONPATH that would put a source tree before it.
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel and install it, without its dependencies, into a new environment."""
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
         "-q", "-w", str(where / "dist")],
        check=True, capture_output=True, cwd=where,
    )  # fmt: skip
    # The dependencies come from this interpreter's site-packages; the engine from the wheel.
    venv.create(where / "env", system_site_packages=True, with_pip=False)
    python = where / "env" / "bin" / "python"
    wheel = next((where / "dist").glob("liveness-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--ignore-installed", str(wheel)],
        check=True, capture_output=True, env=CLEAN,
    )  # fmt: skip
    return where / "env" / "bin"


def test_the_installed_engine_runs_its_demo_from_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(installed / "python"), "-c", "import liveness; print(liveness.__file__)"],
        check=True, capture_output=True, text=True, cwd=tmp_path, env=CLEAN,
    )  # fmt: skip
    assert str(REPO) not in done.stdout  # the wheel's copy, not the clone
    demo = subprocess.run(
        [str(installed / "liveness"), "demo", "--persons", "200", "--days", "40", "--months",
         "0", "--out", "d", "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600, env=CLEAN,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert json.loads(demo.stdout.splitlines()[-1])["runs"] == 1


def test_init_writes_an_editable_policy_that_config_check_accepts(
    installed: Path, tmp_path: Path
) -> None:
    liveness = str(installed / "liveness")
    subprocess.run(
        [liveness, "init", "policy"], check=True, capture_output=True, cwd=tmp_path, env=CLEAN
    )
    shipped = sorted(p.name for p in (REPO / "config").glob("*.toml"))
    assert sorted(p.name for p in (tmp_path / "policy").glob("*.toml")) == shipped
    check = subprocess.run(
        [liveness, "config", "check"], capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "LIVENESS_CONFIG_DIR": str(tmp_path / "policy")},
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert all(name in check.stdout for name in shipped)
