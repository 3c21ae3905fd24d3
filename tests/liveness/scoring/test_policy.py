from pathlib import Path

import numpy as np
import pytest

from liveness.scoring import BENEFIT_TYPES, PolicyError, benefit_rule_codes, load_policy

POLICY_PATH = Path(__file__).parents[3] / "config" / "scoring.toml"


@pytest.fixture(scope="module")
def text() -> str:
    return POLICY_PATH.read_text(encoding="utf-8")


def test_default_policy_loads_with_expected_shape() -> None:
    policy = load_policy(POLICY_PATH)
    assert policy.sources == (
        "transit", "card_txn", "medical", "face",
        # the data scenarios declared in sources.toml
        "travel", "health_check", "community", "counter", "ltc", "vaccination",
        "remote_medical", "family_doctor",
    )  # fmt: skip
    assert policy.group_members["medical"] == ["medical", "ltc", "remote_medical"]
    assert policy.group_members["health_centre"] == [
        "health_check", "vaccination", "family_doctor",
    ]  # fmt: skip
    assert len(policy.version) == 12
    assert len(policy.kinds) == len(policy.weight_of_kind) == len(policy.source_of_kind)
    assert policy.weight_of_kind.dtype == np.float32
    for code, (source, _) in enumerate(policy.kinds):
        assert policy.sources[policy.source_of_kind[code]] == source
    assert policy.recent_windows == (90, 180)
    assert policy.overrides["resident_pension"].recent == 180
    # An institution's care records make strong alone; the override keeps the default's.
    assert policy.default.institution == {"ltc": 6.0}
    assert policy.overrides["resident_pension"].institution == {"ltc": 6.0}


def test_default_weights_follow_the_evidence_hierarchy() -> None:
    policy = load_policy(POLICY_PATH)
    w = {k: float(policy.weight_of_kind[i]) for k, i in policy.kind_index.items()}
    assert w[("card_txn", "auto_debit")] == 0
    assert 0 < w[("transit", "tap")] < w[("transit", "tap_face")]
    assert w[("transit", "tap_face_failed")] == 0
    assert 0 < w[("medical", "pharmacy")] < w[("medical", "outpatient")]
    assert 0 < w[("face", "pass_proxy")] < w[("face", "pass_assisted")]
    assert w[("face", "pass_assisted")] < min(w[("face", "pass_app")], w[("face", "pass_kiosk")])
    assert w[("face", "fail")] == w[("face", "no_liveness")] == w[("face", "no_face")] == 0
    # A visit far away weighs as one at home; a discharge there has no outcome to read.
    for kind in ("outpatient", "pharmacy", "inpatient_admission"):
        assert w[("remote_medical", kind)] == w[("medical", kind)]
    assert w[("remote_medical", "inpatient_discharge")] == 0
    # The family doctor's visits are seen in person; a phone call is not evidence.
    assert w[("family_doctor", "home_visit")] == w[("family_doctor", "clinic_follow_up")] == 1
    assert w[("family_doctor", "phone_follow_up")] == 0
    settling = {policy.kinds[i] for i in np.flatnonzero(policy.settles_of_kind)}
    assert settling == {("face", "pass_app"), ("face", "pass_kiosk"), ("face", "pass_assisted")}


def test_version_changes_when_the_file_changes(tmp_path: Path, text: str) -> None:
    path = tmp_path / "scoring.toml"
    path.write_text(text, encoding="utf-8")
    first = load_policy(path).version
    assert load_policy(path).version == first
    path.write_text(text + "\n# reviewed\n", encoding="utf-8")
    assert load_policy(path).version != first


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("recent = 90 ", "recent = -1 ", "windows.recent"),
        ("recent = 90 ", "recent = true ", "windows.recent"),
        ("long = 365", "long = 30", "windows.recent"),
        ("tap = 0.25", "tap = -0.25", "weights.transit.tap"),
        ("tap = 0.25", "tapp = 0.25", "weights.transit.tapp"),
        ("pharmacy = 0.5", "", "weights.medical.pharmacy"),
        ("min_weight = 1.0", "min_weight = 0", "levels.min_weight"),
        ("strong_sources = 2", "strong_sources = 9", "levels.strong_sources"),
        ('"face.pass_app"', '"face.pass_ap"', "levels.face_settles"),
        ('"face.pass_app"', '"face.fail"', "levels.face_settles"),
        (
            "[levels.overrides.resident_pension]",
            "[levels.overrides.resident]",
            "levels.overrides.resident",
        ),
        ("recent = 180", "recnt = 180", "levels.overrides.resident_pension.recnt"),
        ("recent = 180", "recent = 400", "levels.overrides.resident_pension.recent"),
        ("[windows]", "[window]", "window"),
        ("[weights.face]", "[weights.selfie]", "weights.selfie"),
        ("[levels]", "[levels]\nstrong = 1", "levels.strong"),
        ("{ ltc = 6.0 }", "{ ltcc = 6.0 }", "levels.institution.ltcc: unknown trace source"),
        ("{ ltc = 6.0 }", "{ ltc = 0.0 }", "levels.institution.ltc"),
        ("{ ltc = 6.0 }", '{ ltc = "6" }', "levels.institution.ltc"),
        ("{ ltc = 6.0 }", "6.0", "levels.institution"),
        (
            "recent = 180",
            "recent = 180\ninstitution = { nursing = 6.0 }",
            "levels.overrides.resident_pension.institution.nursing: unknown trace source",
        ),
        (
            "recent = 180",
            "recent = 180\ninstitution = { ltc = -1.0 }",
            "levels.overrides.resident_pension.institution.ltc",
        ),
    ],
)
def test_bad_policy_names_the_key(tmp_path: Path, text: str, old: str, new: str, key: str) -> None:
    assert old in text
    path = tmp_path / "scoring.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(PolicyError, match=key.replace(".", r"\.")):
        load_policy(path)


def test_broken_toml_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "scoring.toml"
    path.write_text("[windows\nrecent = 90", encoding="utf-8")
    with pytest.raises(PolicyError, match="TOML"):
        load_policy(path)


def test_benefit_rule_codes_from_strings_and_codes() -> None:
    policy = load_policy(POLICY_PATH)
    names = np.array(["enterprise_pension", "resident_pension", "unknown"], dtype=object)
    assert benefit_rule_codes(benefit_type=names, policy=policy).tolist() == [0, 1, 0]
    codes = np.array([BENEFIT_TYPES.index("resident_pension"), 0, -1, 99])
    assert benefit_rule_codes(benefit_type=codes, policy=policy).tolist() == [1, 0, 0, 0]
