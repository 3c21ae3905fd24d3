"""Every policy file through its typed reader: unknown keys and wrong types named, versions kept."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from liveness.entry.policy_check import POLICY_FILES, check_policy_folder
from tests.liveness.conftest import REPO, invoke_cli

CONFIG = REPO / "config"

# Per file: a valid line, the same key with a value of the wrong type, and its key path.
WRONG_TYPES = {
    "access.toml": ("max_failures = 5", 'max_failures = "5"', "max_failures"),
    "areas.toml": ('"33" = { zh = "浙江省"', '"33" = { zh = 33', "regions.33.zh"),
    "certification.toml": ("valid_months = 12", 'valid_months = "12"', "cycle.valid_months"),
    "estimator.toml": ("max_iter = 200", "max_iter = true", "estimator.max_iter"),
    "health.toml": ("trailing_days = 28", "trailing_days = 2.5", "trailing_days"),
    "integrity.toml": ("due_days = 30", 'due_days = "30"', "orders.due_days"),
    "schedule.toml": ("retry_delay_s = 900", "retry_delay_s = 1.5", "nightly.retry_delay_s"),
    "scoring.toml": ("min_weight = 1.0 ", 'min_weight = "1" ', "levels.min_weight"),
    "sources.toml": (
        "future_allowance_minutes = 60",
        'future_allowance_minutes = "60"',
        "future_allowance_minutes",
    ),
}


def copy_config(tmp_path: Path) -> Path:
    """Copy the shipped policy folder to a temporary one."""
    folder = tmp_path / "config"
    shutil.copytree(CONFIG, folder)
    return folder


def only_error(folder: Path, name: str) -> str:
    """Check `folder`; assert that `name` alone failed and return its error."""
    checks = {check.name: check for check in check_policy_folder(folder)}
    failed = [check.name for check in checks.values() if check.error is not None]
    assert failed == [name]
    error = checks[name].error
    assert error is not None and "\n" not in error  # one line
    return error


def test_every_policy_file_is_checked() -> None:
    assert sorted(POLICY_FILES) == sorted(path.name for path in CONFIG.glob("*.toml"))
    assert set(WRONG_TYPES) == set(POLICY_FILES)


@pytest.mark.parametrize("name", sorted(POLICY_FILES))
def test_an_unknown_key_is_refused_by_name(tmp_path: Path, name: str) -> None:
    folder = copy_config(tmp_path)
    path = folder / name
    # Before the first table, so it is a top-level key of the file.
    path.write_text("surplus_setting = 1\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    error = only_error(folder, name)
    assert str(path) in error and "surplus_setting" in error


@pytest.mark.parametrize("name", sorted(POLICY_FILES))
def test_a_wrong_type_is_refused_naming_the_key(tmp_path: Path, name: str) -> None:
    folder = copy_config(tmp_path)
    path = folder / name
    valid, wrong, key = WRONG_TYPES[name]
    text = path.read_text(encoding="utf-8")
    assert text.count(valid) == 1
    path.write_text(text.replace(valid, wrong), encoding="utf-8")
    error = only_error(folder, name)
    assert error.startswith(f"{path}: ") and key in error


def test_the_shipped_policy_loads_with_its_versions_unchanged() -> None:
    # A version is the first 12 hex characters of the SHA-256 of the file's bytes.
    expected = {
        name: hashlib.sha256((CONFIG / name).read_bytes()).hexdigest()[:12] for name in POLICY_FILES
    }
    checks = check_policy_folder(CONFIG)
    assert {check.name: check.version for check in checks} == expected
    # The loaders that carry a version (recorded on runs, leads and artifacts) give the same.
    for name in ("access.toml", "certification.toml", "estimator.toml", "health.toml",
                 "integrity.toml", "scoring.toml"):  # fmt: skip
        loaded = POLICY_FILES[name](CONFIG / name)
        assert loaded.version == expected[name]  # type: ignore[attr-defined]


def test_init_then_check_round_trip(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tmp_path / "policy"
    code, output = invoke_cli(cli_env, "init", str(folder))
    assert code == 0, output
    for name in POLICY_FILES:
        assert (folder / name).read_bytes() == (CONFIG / name).read_bytes()  # comments and all
    code, output = invoke_cli(cli_env, "config", "check", str(folder))
    assert code == 0, output
    for name in POLICY_FILES:
        version = hashlib.sha256((folder / name).read_bytes()).hexdigest()[:12]
        assert f"{name}" in output and version in output

    # A second init refuses to overwrite an edited copy; --force does.
    health = folder / "health.toml"
    health.write_text(health.read_text(encoding="utf-8") + "surplus = 2\n", encoding="utf-8")
    code, output = invoke_cli(cli_env, "init", str(folder))
    assert code == 10 and "--force" in output
    assert "surplus = 2" in health.read_text(encoding="utf-8")

    code, output = invoke_cli(cli_env, "config", "check", str(folder))
    assert code == 10 and "lag_days.surplus" in output and f"1 of {len(POLICY_FILES)}" in output

    code, output = invoke_cli(cli_env, "init", str(folder), "--force")
    assert code == 0, output
    assert health.read_bytes() == (CONFIG / "health.toml").read_bytes()


def test_check_defaults_to_the_configured_folder(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = copy_config(tmp_path)
    (folder / "schedule.toml").unlink()
    code, output = invoke_cli({**cli_env, "LIVENESS_CONFIG_DIR": str(folder)}, "config", "check")
    assert code == 10 and "schedule.toml" in output and "missing" in output
