"""New sources declared in config/sources.toml alone: their columns, link, time, kinds, group."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from connectors import SOURCES, ConfigError, get_connector, load_source_configs, trace_specs
from tests.connectors.test_conformance import read_all

REPO = Path(__file__).resolve().parents[2]

CANTEEN = """
[canteen]
path = "var/inbox/canteen"
label = { zh = "老年食堂", en = "elderly canteen" }
link = ["card_no", "name_birth_date"]
time_column = "served_at"
kind_column = "meal"
kinds = { lunch = "meal", dinner = "meal", event = "event" }
columns = [
  { name = "record_id", kind = "str", required = true },
  { name = "card_no", kind = "str" },
  { name = "name", kind = "str" },
  { name = "birth_date", kind = "date" },
  { name = "served_at", kind = "timestamp", required = true },
  { name = "meal", kind = "enum", values = ["lunch", "dinner", "event"], required = true },
  { name = "correction", kind = "bool" },
]

[checkup]
label = { zh = "老年人体检", en = "health check" }
link = "id_number"
time_column = "checked_on"
kind = "check"
group = "medical"
columns = [
  { name = "record_id", kind = "str", required = true },
  { name = "id_number", kind = "id_number", required = true },
  { name = "checked_on", kind = "date", required = true },
  { name = "fee", kind = "money", allow_zero = true },
]

[validation.ceilings]
fee = 500.00

[medical]
group = "medical"
"""


def load(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return load_source_configs(path)


def test_a_declared_source_is_a_source_like_the_built_in_ones(tmp_path: Path) -> None:
    configs = load(tmp_path, CANTEEN)
    assert list(configs)[: len(SOURCES)] == list(SOURCES)
    assert list(configs)[len(SOURCES) :] == ["canteen", "checkup"]
    canteen = configs["canteen"]
    assert canteen.path == "var/inbox/canteen"
    assert canteen.spec.key == ("record_id",) and canteen.spec.cursor == "served_at"
    assert canteen.trace is not None
    assert canteen.trace.link == ("card_no", "name_birth_date")
    assert canteen.trace.kinds == ("meal", "event") and canteen.trace.group == "canteen"
    assert dict(canteen.trace.label) == {"zh": "老年食堂", "en": "elderly canteen"}
    checkup = configs["checkup"].trace
    assert checkup is not None and checkup.kinds == ("check",) and checkup.group == "medical"
    assert configs["canteen"].validation.ceilings["fee"] == 500
    # A built-in source keeps its format; without a group of its own it is the plain default.
    assert configs["medical"].declared is None and configs["medical"].spec is SOURCES["medical"]
    assert list(trace_specs(configs)) == [
        "transit", "card_txn", "medical", "face", "canteen", "checkup",
    ]  # fmt: skip


def test_a_built_in_trace_source_may_join_a_group(tmp_path: Path) -> None:
    configs = load(tmp_path, '[card_txn]\ngroup = "medical"\n')
    trace = configs["card_txn"].trace
    assert trace is not None and trace.group == "medical"
    assert configs["card_txn"].spec.columns == SOURCES["card_txn"].columns


def test_a_declared_source_reads_validates_and_quarantines(tmp_path: Path) -> None:
    configs = load(tmp_path, CANTEEN)
    path = tmp_path / "canteen.csv"
    path.write_text(
        "record_id,card_no,name,birth_date,served_at,meal\n"
        "K1,C1,,,2025-05-03 11:30:00,lunch\n"
        "K2,,王五,1955-03-03,2025-05-03 17:30:00,dinner\n"
        "K3,C2,,,2025-05-04 11:30:00,breakfast\n"
        "K4,C2,,,yesterday,lunch\n",
        encoding="utf-8",
    )
    got = read_all(get_connector("canteen", configs), path)
    assert got.rows["record_id"].tolist() == ["K1", "K2"]
    assert got.rows["birth_date"].tolist()[1] == pd.Timestamp("1955-03-03")
    assert got.rows["served_at"].tolist()[0] == pd.Timestamp("2025-05-03 03:30", tz="UTC")
    reasons = got.quarantined["reason"].tolist()
    assert "bad value in meal: 'breakfast'" in reasons[0] and "served_at" in reasons[1]


def test_the_shipped_declarations_load(tmp_path: Path) -> None:
    configs = load_source_configs(REPO / "config" / "sources.toml")
    declared = [name for name in configs if name not in SOURCES]
    document = tomllib.loads((REPO / "config" / "scoring.toml").read_text(encoding="utf-8"))
    lags = tomllib.loads((REPO / "config" / "health.toml").read_text(encoding="utf-8"))
    # Every declared source is a trace source with its weights in scoring.toml, its lag in
    # health.toml.
    groups = {}
    for name in declared:
        trace = configs[name].trace
        assert trace is not None and set(document["weights"][name]) == set(trace.kinds)
        assert lags["lag_days"][name] > 0
        groups[name] = trace.group
    # Care far away is medical care; the family doctor works at the health centre.
    assert {name for name, group in groups.items() if group == "medical"} == {
        "ltc", "remote_medical",
    }  # fmt: skip
    assert {name for name, group in groups.items() if group == "health_centre"} == {
        "health_check", "vaccination", "family_doctor",
    }  # fmt: skip
    remote = configs["remote_medical"].trace
    assert remote is not None and remote.link == ("id_number",)
    assert remote.label["zh"] == "异地就医结算"
    assert dict(remote.kind_map)["inpatient_discharge"] == "inpatient_discharge"


COLUMNS = '[{ name = "record_id", kind = "str", required = true }, ' \
    '{ name = "id_number", kind = "id_number", required = true }, ' \
    '{ name = "seen_at", kind = "timestamp", required = true }]'  # fmt: skip
GOOD = (
    '[visits]\nlabel = { zh = "来访", en = "visits" }\nlink = "id_number"\n'
    f'time_column = "seen_at"\nkind = "visit"\ncolumns = {COLUMNS}\n'
)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('label = { zh = "来访", en = "visits" }\n', "", r"\[visits\.label\] is required"),
        ('en = "visits"', 'fr = "visites"', r"\[visits\.label\.fr\] unknown key"),
        ('link = "id_number"', 'link = "email"', r"\[visits\.link\.0\] 'email' is not one of"),
        ('link = "id_number"', 'link = "card_no"', r"\[visits\.link\] card_no links by a str"),
        (
            'link = "id_number"',
            'link = ["name_birth_date", "id_number"]',
            r"\[visits\.link\] .*only as the fallback",
        ),
        ('"seen_at"\nkind', '"record_id"\nkind', r"\[visits\.time_column\] 'record_id' is not"),
        ('kind = "visit"', 'kind = "Visit!"', r"\[visits\.kind\] 'Visit!' is not a name"),
        ('kind = "visit"', 'kind = "voided"', r"\[visits\.kind\] 'voided' is reserved"),
        ('kind = "visit"', "", r"\[visits\.kind\] give either kind"),
        (
            'kind = "visit"',
            'kind_column = "seen_at"',
            r"\[visits\.kind_column\] 'seen_at' is not a required enum column",
        ),
        ('"timestamp"', '"integer"', r"\[visits\.columns\.2\.kind\] 'integer' is not one of str"),
        ("required = true }]", "size = 3 }]", r"\[visits\.columns\.2\.size\] unknown key"),
        (
            '"id_number", required = true',
            '"id_number", required = "yes"',
            r"\[visits\.columns\.1\.required\] must be true or false, not 'yes'",
        ),
        ("columns = [", "columns = 3\n# [", r"\[visits\.columns\] must be an array, not 3"),
        ("columns = [", "colums = [", r"\[visits\.colums\] unknown key; allowed keys: columns"),
        ("[visits]", "[Visits]", r"\[Visits\] a declared source's name"),
        ("[visits]", "[transit]", r"\[transit\.label\] transit is a built-in source"),
    ],
)
def test_a_bad_declaration_names_the_file_and_key(
    tmp_path: Path, old: str, new: str, match: str
) -> None:
    assert old in GOOD
    path = tmp_path / "sources.toml"
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as caught:
        load_source_configs(path)
    assert str(caught.value).startswith(f"{path}: [")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[cremation]\ngroup = "deaths"\n', r"\[cremation\.group\] only a trace source"),
        ('[medical]\ngroup = "Care"\n', r"\[medical\.group\] 'Care' is not a name"),
        (
            CANTEEN.replace(', event = "event" }', " }"),
            r"\[canteen\.kinds\] no kind for the value 'event' of meal",
        ),
        (
            CANTEEN.replace('{ name = "card_no", kind = "str" },\n', ""),
            r"\[canteen\.link\] card_no links by a str column 'card_no'",
        ),
        (
            CANTEEN.replace('dinner = "meal"', 'supper = "meal"'),
            r"\[canteen\.kinds\] no kind for the value 'dinner' of meal",
        ),
        (
            CANTEEN.replace("fee = 500.00", "tip = 5"),
            r"\[validation\.ceilings\.tip\] not a money column; money columns: amount, fee,",
        ),
    ],
)
def test_more_bad_declarations(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, text)
