"""The engine as people install it: its policy found outside a clone, its command line quick."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from liveness.settings import PACKAGED_CONFIG, Settings
from tests.liveness.conftest import REPO


def test_outside_a_clone_the_shipped_policy_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIVENESS_CONFIG_DIR", raising=False)
    settings = Settings(_env_file=None)
    assert settings.config_dir == PACKAGED_CONFIG
    shipped = sorted(p.name for p in PACKAGED_CONFIG.glob("*.toml"))
    assert shipped == sorted(p.name for p in (REPO / "config").glob("*.toml"))
    for name in shipped:
        assert (PACKAGED_CONFIG / name).read_bytes() == (REPO / "config" / name).read_bytes()


def test_a_working_folder_with_its_own_policy_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "sources.toml").write_text("", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIVENESS_CONFIG_DIR", raising=False)
    assert Settings(_env_file=None).config_dir == Path("config")
    monkeypatch.setenv("LIVENESS_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert Settings(_env_file=None).config_dir == tmp_path / "elsewhere"


def test_the_command_line_starts_without_the_learned_estimator(tmp_path: Path) -> None:
    # scikit-learn takes seconds to import; only `liveness classifier ...` and the demo need it.
    probe = "import sys, liveness.entry.cli; print('sklearn' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "False", done.stderr


def test_the_command_line_starts_without_the_data_libraries() -> None:
    # pandas, pyarrow, numpy and SQLAlchemy load inside the commands that read data, not for
    # `--help` (bench/startup measures the difference).
    heavy = ("pandas", "pyarrow", "numpy", "sqlalchemy")
    probe = f"import sys, liveness.entry.cli; print(*[m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.split() == [], done.stderr


def test_listing_runs_loads_no_data_library(tmp_path: Path) -> None:
    # `liveness runs` reads a few rows: the store, ingest, the run's work and pandas stay
    # unloaded, so that it starts well under a second (bench/README.md, start-up).
    env = {**os.environ, "LIVENESS_DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite'}"}
    cli = "import sys; from liveness.entry.cli import app; sys.argv[0] = 'liveness'; app()"
    subprocess.run(
        [sys.executable, "-c", cli, "db", "upgrade"],
        capture_output=True, text=True, cwd=REPO, env=env, check=True,
    )  # fmt: skip
    heavy = ("sklearn", "pandas", "pyarrow", "numpy")
    probe = (
        "import sys\nfrom liveness.entry.cli import app\nsys.argv = ['liveness', 'runs']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', *[m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert "runs (0)" in done.stdout, done.stderr
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout
