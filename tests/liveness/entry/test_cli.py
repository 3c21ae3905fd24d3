"""The command line as an operator uses it: clear errors, exit codes, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from models import EvidencePart
from tests.liveness.conftest import invoke_cli


def test_commands_refuse_a_database_without_schema(cli_env: dict[str, str]) -> None:
    code, output = invoke_cli(cli_env, "run", "--as-of", "2025-01-31")
    assert code == 6
    assert "liveness db upgrade" in output


def test_a_run_without_a_roll_says_what_to_load(cli_env: dict[str, str]) -> None:
    assert invoke_cli(cli_env, "db", "upgrade")[0] == 0
    code, output = invoke_cli(cli_env, "run", "--as-of", "2025-01-31")
    assert code == 4
    assert "registry" in output


def test_unknown_source_and_missing_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    invoke_cli(cli_env, "db", "upgrade")
    code, output = invoke_cli(cli_env, "ingest", "--source", "weather", str(tmp_path))
    assert code != 0 and "transit" in output
    code, output = invoke_cli(cli_env, "ingest", "--source", "transit", str(tmp_path / "nope.csv"))
    assert code != 0 and "nope.csv" in output


def test_a_refused_file_reports_json_and_fails(cli_env: dict[str, str], tmp_path: Path) -> None:
    invoke_cli(cli_env, "db", "upgrade")
    path = tmp_path / "transit.csv"
    path.write_bytes(
        "record_id,card_no,tapped_at,city_code\nT1,卡1,2025-01-01 08:00:00,1\n".encode("gb18030")
    )
    code, output = invoke_cli(cli_env, "ingest", "--source", "transit", "--json", str(path))
    assert code == 3
    report = json.loads(output.splitlines()[0])
    assert report["status"] == "refused" and "byte" in report["error"]


def test_simulate_ingest_and_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    city = tmp_path / "city"
    code, _ = invoke_cli(
        cli_env, "simulate", "--out", str(city), "--persons", "300", "--days", "60", "--seed", "3"
    )
    assert code == 0
    invoke_cli(cli_env, "db", "upgrade")
    for source in ("registry", "cards", "transit", "card_txn", "medical", "face", "cremation",
                   "deregistration"):  # fmt: skip
        code, output = invoke_cli(
            cli_env, "ingest", "--source", source, "--json", str(city / source)
        )
        assert code == 0, output
        for line in output.splitlines():
            report = json.loads(line)
            assert (
                report["loaded"] + report["redelivered"] + report["quarantined"]
                == report["rows_read"]
            )
    parts = _parts_per_month(cli_env)
    assert max(parts.values()) > 1  # daily deliveries: several parts a month
    code, output = invoke_cli(cli_env, "run", "--as-of", "2025-03-01", "--json")
    assert code == 0
    report = json.loads(output)
    assert report["persons"] == 300
    assert sum(report["levels"].values()) == 300
    # The run compacted first, as the nightly job does: one part per source and month.
    assert _parts_per_month(cli_env) == dict.fromkeys(parts, 1)
    # The next night by ranges of 100 person ids, as the setting asks: the report says so.
    by_ranges = {**cli_env, "LIVENESS_RUN_PARTITION_PERSONS": "100"}
    code, output = invoke_cli(by_ranges, "run", "--as-of", "2025-03-02")
    assert code == 0, output
    assert "run by ranges" in output and "of 100 person ids" in output


def _parts_per_month(env: dict[str, str]) -> dict[tuple[str, str], int]:
    """Count the evidence parts of each (source, month) in the manifest."""
    engine = create_engine(env["LIVENESS_DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(
            select(EvidencePart.source, EvidencePart.month, func.count()).group_by(
                EvidencePart.source, EvidencePart.month
            )
        ).all()
    engine.dispose()
    return {(str(source), str(month)): int(count) for source, month, count in rows}


def test_the_delivery_log_quarantine_and_unmatched_evidence_are_listable(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    invoke_cli(cli_env, "db", "upgrade")
    registry = tmp_path / "registry.csv"
    registry.write_text(
        "person_ref,id_number,name,sex,birth_date,benefit_type,monthly_amount,benefit_start,region_code,grid_code,status\n"
        "P1,330702194501011230,张三,M,1945-01-01,enterprise_pension,3000.00,2005-01-01,330702,G1,active\n"
    )
    medical = tmp_path / "medical.csv"
    medical.write_text(
        "record_id,id_number,visit_at,institution_code,visit_type\n"
        "M1,330702194501011230,2025-02-01 09:00:00,H1,outpatient\n"
        "M2,110101195001011234,2025-02-02 09:00:00,H1,outpatient\n"  # nobody on the roll
        "M3,330702194501011230,2025-02-03 09:00:00,H1,fortune_telling\n"
    )
    invoke_cli(cli_env, "ingest", "--source", "registry", str(registry))
    code, _ = invoke_cli(cli_env, "ingest", "--source", "medical", str(medical))
    assert code == 0

    code, output = invoke_cli(cli_env, "deliveries", "--json")
    log = [json.loads(line) for line in output.splitlines()]
    assert [
        (d["source"], d["read"], d["loaded"], d["quarantined"], d["unmatched"]) for d in log
    ] == [
        ("medical", 3, 2, 1, 1),
        ("registry", 1, 1, 0, 0),
    ]

    code, output = invoke_cli(cli_env, "quarantine", "list", "--json")
    (row,) = [json.loads(line) for line in output.splitlines()]
    assert (row["file"], row["line"]) == ("medical.csv", 4)
    assert "fortune_telling" in row["reason"] and row["raw"].startswith("M3,")

    exported = tmp_path / "out" / "quarantine.csv"
    assert invoke_cli(cli_env, "quarantine", "export", "--out", str(exported))[0] == 0
    assert "fortune_telling" in exported.read_text(encoding="utf-8-sig")

    code, output = invoke_cli(cli_env, "unmatched", "--json")
    (trace,) = [json.loads(line) for line in output.splitlines()]
    assert (trace["source"], trace["link_key"], trace["rows"]) == (
        "medical",
        "110101195001011234",
        1,
    )
    # A source that is none (a typo) is said so, not listed as an empty table.
    for args in (("deliveries",), ("quarantine", "list"), ("unmatched",),
                 ("quarantine", "export", "--out", str(exported))):  # fmt: skip
        code, output = invoke_cli(cli_env, *args, "--source", "medcal")
        assert code == 2 and "is no source" in output, (args, output)
    assert invoke_cli(cli_env, "deliveries", "--source", "medical")[0] == 0


def test_an_operator_corrects_a_visits_death_and_records_a_letter(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.liveness.ingest.test_ingest import REGISTRY

    invoke_cli(cli_env, "db", "upgrade")
    roll = tmp_path / "registry.csv"
    roll.write_text(REGISTRY, encoding="utf-8")
    assert invoke_cli(cli_env, "ingest", "--source", "registry", str(roll))[0] == 0
    code, output = invoke_cli(cli_env, "run", "--as-of", "2999-01-01")
    assert code == 5 and "after today" in output
    assert invoke_cli(cli_env, "run", "--as-of", "2025-04-30")[0] == 0
    code, output = invoke_cli(cli_env, "run", "--as-of", "2025-03-31")
    assert code == 5 and "before the latest published run" in output
    # Everyone is weak: visits 1-3. A mistyped year is refused, naming the field.
    for day, words in (("2999-05-05", "after today"), ("2020-05-05", "before the task opened")):
        code, output = invoke_cli(
            cli_env, "tasks", "outcome", "2", "--outcome", "alive_confirmed", "--by", "worker-1",
            "--on", day,
        )  # fmt: skip
        assert code == 11 and f"on: the review day {day} is {words}" in output, output
    # P2's visit finds them dead.
    code, output = invoke_cli(
        cli_env, "tasks", "outcome", "2", "--outcome", "deceased", "--by", "worker-1",
        "--on", "2025-05-05", "--died-on", "2025-04-20",
    )  # fmt: skip
    assert code == 0, output
    assert invoke_cli(cli_env, "run", "--as-of", "2025-05-31")[0] == 0
    code, output = invoke_cli(
        cli_env, "tasks", "correct", "2", "--outcome", "not_found", "--by", "worker-1",
        "--note", "mine",
    )  # fmt: skip
    assert code == 11 and "someone else" in output
    code, output = invoke_cli(
        cli_env, "tasks", "correct", "2", "--outcome", "not_found", "--by", "lead-1",
        "--note", "the neighbour's house", "--on", "2025-06-02",
    )  # fmt: skip
    assert code == 0, output
    code, output = invoke_cli(cli_env, "run", "--as-of", "2025-06-30", "--json")
    assert code == 0
    report = json.loads(output)
    assert report["payment_events"]["death_withdrawn"] == 1
    code, output = invoke_cli(cli_env, "notices", "list", "--json")
    pending = [json.loads(line) for line in output.splitlines()]
    assert code == 0 and pending and all(n["id"] for n in pending)
    code, output = invoke_cli(
        cli_env, "notices", "sent", str(pending[0]["id"]), "--letter", "--by", "clerk-1",
        "--on", "2025-07-01",
    )  # fmt: skip
    assert code == 0, output
    assert "1 notices recorded as sent on 2025-07-01" in output
    # Named twice, and once more on another day: each once, and its first day stands.
    first, second = str(pending[0]["id"]), str(pending[1]["id"])
    code, output = invoke_cli(cli_env, "notices", "sent", first, second, second, "--by", "clerk-1")
    assert code == 0, output
    assert "1 notices recorded as sent" in output and "1 already recorded as sent" in output
    code, output = invoke_cli(cli_env, "notices", "list", "--json")
    assert str(pending[0]["id"]) not in [
        str(json.loads(line)["id"]) for line in output.splitlines()
    ]


def test_prune_says_how_many_assessments_went(cli_env: dict[str, str]) -> None:
    assert invoke_cli(cli_env, "db", "upgrade")[0] == 0
    code, output = invoke_cli(cli_env, "prune", "--json")
    assert code == 0
    assert json.loads(output) == {"assessments_pruned": 0, "retention_days": 730}


@pytest.mark.parametrize(
    "args",
    [
        ("tasks", "outcome", str(10**20), "--outcome", "alive_confirmed", "--by", "w"),
        ("tasks", "correct", "0", "--outcome", "not_found", "--by", "s", "--note", "n"),
        ("notices", "sent", "1", str(10**20), "--by", "clerk"),
        ("lists", "approve", str(2**31), "--operator", "op"),
        ("lists", "reject", "0", "--operator", "op", "--reason", "r"),
        ("orders", "show", str(10**20)),
        ("orders", "answer", str(10**20), "--verdict", "explained", "--by", "insp"),
        ("runs", "--limit", str(10**20)),
        ("deliveries", "--limit", str(10**20)),
        ("clients", "create", "--name", "c", "--role", "admin", "--expires-days", str(10**20)),
        ("simulate", "--out", "city", "--days", str(10**20)),
        ("simulate", "--out", "city", "--start", "9999-12-01"),
        ("demo", "--persons", str(10**20)),
        ("classifier", "train", "--as-of", "2025-06-01", "--horizon", str(10**20)),
        ("orders", "create", "--by", "sup", "--due-days", "9999999"),
        ("evidence", "compact", "--grace-minutes", str(10**20)),
        ("demo", "--months", str(10**20)),
    ],
)
def test_a_number_out_of_range_is_a_usage_error_naming_it(
    cli_env: dict[str, str], args: tuple[str, ...]
) -> None:
    # Ids past the database's 32-bit integers, counts and calendars past their ends: refused
    # before any work, never an internal error from the driver or NumPy.
    code, output = invoke_cli(cli_env, *args)
    assert code == 2, output
    assert "Invalid value for" in output and "internal error" not in output


@pytest.mark.parametrize(
    "args",
    [
        ("tasks", "outcome", "1", "--outcome", "alive_confirmed", "--by"),
        ("tasks", "correct", "1", "--outcome", "alive_confirmed", "--note", "n", "--by"),
        ("notices", "sent", "1", "--by"),
        ("lists", "audit-sample", "--month", "2025-12", "--by"),
        ("lists", "approve", "1", "--operator"),
        ("lists", "reject", "1", "--reason", "r", "--operator"),
        ("orders", "create", "--by"),
        ("orders", "answer", "1", "--verdict", "confirmed", "--by"),
        ("orders", "review", "1", "--accept", "--by"),
    ],
)
def test_who_acted_is_a_name_the_records_hold(
    cli_env: dict[str, str], args: tuple[str, ...]
) -> None:
    # Empty, it named nobody in the audit; padded, `alice ` was another operator than `alice`
    # to the rule that whoever caused an entry may not approve it; past 64 characters,
    # PostgreSQL refused the audit row with an internal error.
    for who in ("", " alice", "alice ", "a\tb", "x" * 65):
        code, output = invoke_cli(cli_env, *args, who)
        assert code == 2, (who, output)
        assert f"Invalid value for '{args[-1]}'" in output and "internal error" not in output


def test_an_address_the_server_cannot_listen_on_is_said_so(cli_env: dict[str, str]) -> None:
    # Uvicorn exits 3 when it cannot bind: the exit code of a refused delivery here. In a
    # process of its own, as an operator runs it (uvicorn wants a thread without an event loop).
    assert invoke_cli(cli_env, "db", "upgrade")[0] == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = subprocess.run(
            [sys.executable, "-c", "from liveness.entry.cli import main; main()", "serve",
             "--port", str(port)],
            env={**os.environ, **cli_env}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert served.returncode == 74, served.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in served.stderr
    assert "Traceback" not in served.stderr


def test_a_city_is_simulated_into_a_new_or_empty_folder(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # A second city written over a first one left the first's files it did not rewrite (its
    # later days), mixed with its own; a folder in use (the evidence store) was written into.
    city = tmp_path / "city"
    args = ("simulate", "--out", str(city), "--persons", "100", "--days", "30")
    assert invoke_cli(cli_env, *args)[0] == 0
    before = sorted(path.relative_to(city) for path in city.rglob("*"))
    code, output = invoke_cli(cli_env, *args[:-1], "20")
    assert code == 2 and "is not empty" in output, output
    assert sorted(path.relative_to(city) for path in city.rglob("*")) == before


def test_a_path_the_system_refuses_is_named_with_its_reason(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # A folder asked for where a file stands, or under one: the operator's to fix (exit 74).
    standing = tmp_path / "policy"
    standing.write_text("not a folder", encoding="utf-8")
    for folder, reason in ((standing, "File exists"), (standing / "sub", "Not a directory")):
        code, output = invoke_cli(cli_env, "init", str(folder))
        assert code == 74, output
        assert f"error: {reason}: {folder}" in " ".join(output.split())
