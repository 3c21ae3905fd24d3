"""Every `--json` output of the command line is strict JSON: no NaN or Infinity, missing is null."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from liveness.entry.cli.boundary import strict_json
from liveness.settings import get_settings
from models import InspectionOrder, Run, RunStatus
from tests.liveness.conftest import REPO, invoke_cli

SOURCES = ("registry", "cards", "transit", "card_txn", "medical", "face", "cremation",
           "deregistration")  # fmt: skip


def _refuse(constant: str) -> Any:
    raise ValueError(f"not strict JSON: {constant}")


def strict_lines(output: str) -> list[Any]:
    """Parse each line of `output` with a parser that refuses NaN, Infinity and -Infinity."""
    lines = [line for line in output.splitlines() if line.strip()]
    return [json.loads(line, parse_constant=_refuse) for line in lines]


@pytest.fixture
def env(
    backend: str,
    database_url_factory: Callable[[str], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield {
        "LIVENESS_DATABASE_URL": database_url_factory(backend),
        "LIVENESS_EVIDENCE_DIR": str(tmp_path / "evidence"),
        "LIVENESS_CONFIG_DIR": str(REPO / "config"),
    }
    get_settings.cache_clear()


def test_every_json_output_parses_strictly(env: dict[str, str], tmp_path: Path) -> None:
    city = tmp_path / "city"
    assert invoke_cli(env, "simulate", "--out", str(city), "--persons", "300", "--days", "60",
                      "--seed", "3")[0] == 0  # fmt: skip
    assert invoke_cli(env, "db", "upgrade")[0] == 0
    for source in SOURCES:
        code, output = invoke_cli(env, "ingest", "--source", source, "--json", str(city / source))
        assert code == 0, output
        assert strict_lines(output)
    # Two persons paid into one account: an integrity lead, for `leads` and `orders`.
    shared = tmp_path / "registry_shared.csv"
    shared.write_text(
        "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,"
        "bank_account,region_code,grid_code,status\n"
        "X1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,62280001,"
        "330702,G1,active\n"
        "X2,330702195002021228,李四,F,1950-02-02,enterprise_pension,2500.50,2010-02-01,62280001,"
        "330702,G1,active\n",
        encoding="utf-8",
    )
    assert invoke_cli(env, "ingest", "--source", "registry", str(shared))[0] == 0
    # A refused and an empty delivery beside the loaded ones.
    bad = tmp_path / "bad.csv"
    bad.write_bytes("record_id,card_no,tapped_at,city_code\nT1,卡,2025-02-01 08:00:00,330700\n"
                    .encode("gb18030"))  # fmt: skip
    empty = tmp_path / "empty.csv"
    empty.write_text("record_id,card_no,tapped_at,city_code\n", encoding="utf-8")
    code, output = invoke_cli(env, "ingest", "--source", "transit", "--json", str(bad), str(empty))
    assert code == 3 and [r["status"] for r in strict_lines(output)] == ["refused", "empty"]

    code, output = invoke_cli(env, "run", "--as-of", "2025-03-01", "--json")
    assert code == 0 and strict_lines(output)[0]["persons"] == 302
    # A failed run has no figures: its missing figures are null, never NaN.
    engine = create_engine(env["LIVENESS_DATABASE_URL"])
    with Session(engine) as session, session.begin():
        session.add(Run(as_of=dt.date(2025, 3, 2), status=RunStatus.FAILED, policy_version="x",
                        report={}, error="killed"))  # fmt: skip
    engine.dispose()

    checks: list[tuple[str, ...]] = [
        ("runs", "--json"),
        ("deliveries", "--json"),
        ("quarantine", "list", "--json"),
        ("unmatched", "--json"),
        ("leads", "--json", "--as-of", "2025-03-01"),
        ("lists", "audit-sample", "--month", "2025-03", "--by", "auditor", "--json"),
    ]
    outputs = {}
    for args in checks:
        code, output = invoke_cli(env, *args)
        assert code == 0, (args, output)
        outputs[args[0]] = strict_lines(output)
    runs = outputs["runs"]
    assert [r["status"] for r in runs] == ["failed", "published"]
    assert runs[0]["persons"] is None
    assert isinstance(runs[1]["persons"], int) and runs[1]["persons"] == 302
    assert {d["status"] for d in outputs["deliveries"]} >= {"loaded", "refused", "empty"}
    assert all(d["error"] is None for d in outputs["deliveries"] if d["status"] != "refused")

    assert outputs["leads"], "the simulated city plants integrity leads"
    assert invoke_cli(env, "orders", "create", "--by", "operator")[0] == 0
    engine = create_engine(env["LIVENESS_DATABASE_URL"])
    with Session(engine) as session:
        orders = session.scalars(select(InspectionOrder.id)).all()
    engine.dispose()
    assert orders
    for order in orders:
        code, output = invoke_cli(env, "orders", "show", str(order))
        assert code == 0 and strict_lines(output)


def test_the_demo_prints_strict_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"LIVENESS_CONFIG_DIR": str(REPO / "config")}
    code, output = invoke_cli(env, "demo", "--persons", "2000", "--days", "90", "--months", "1",
                              "--out", str(tmp_path / "demo"), "--json")  # fmt: skip
    assert code == 0, output
    (figures,) = strict_lines(output)
    assert figures["persons"] == 2000


def test_strict_json_turns_every_missing_number_into_null() -> None:
    import numpy as np
    import pandas as pd

    value = {
        "nan": float("nan"), "inf": float("inf"), "np": np.float64("nan"), "na": pd.NA,
        "nat": pd.NaT, "int": np.int64(3), "nested": [{"x": float("-inf")}, (1.5, None)],
        "day": dt.date(2025, 1, 2),
    }  # fmt: skip
    assert strict_json(value) == {
        "nan": None, "inf": None, "np": None, "na": None, "nat": None, "int": 3,
        "nested": [{"x": None}, [1.5, None]], "day": "2025-01-02",
    }  # fmt: skip
