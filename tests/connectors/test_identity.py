from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum, InvalidComponent, ValidationError

from connectors.identity import id_check_character, normalise_id_numbers

REGIONS = ("110101", "330702", "440305", "310104", "510107")
FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")


def oracle(raw: str | None) -> tuple[str, str | None]:
    """Return (status, number) as python-stdnum judges the raw text."""
    if raw is None:
        return "missing", None
    # stdnum folds full-width digits but not a full-width X; SOURCES.md wants both folded
    text = ric.compact(raw.replace("Ｘ", "X").replace("ｘ", "x"))
    if text == "":
        return "missing", None
    if len(text) == 15 and text.isascii() and text.isdigit():
        body = text[:6] + "19" + text[6:]
        full = body + ric.calc_check_digit(body + "0")
        return ("upgraded", full) if _valid18(full) else ("malformed", None)
    try:
        ric.validate(text)
    except InvalidChecksum:
        try:
            ric.get_birth_date(text)
        except ValidationError:
            return "malformed", None
        return "bad_check", None
    except InvalidComponent:
        # stdnum also checks the birth place against its region table; we do not
        return ("valid", text) if _valid18(text) else ("malformed", None)
    except ValidationError:
        return "malformed", None
    return "valid", text


def _valid18(number: str) -> bool:
    try:
        ric.get_birth_date(number)
    except ValidationError:
        return False
    return len(number) == 18 and number[-1] == ric.calc_check_digit(number)


@st.composite
def birth_dates(draw: st.DrawFn, *, legacy: bool) -> str:
    year = draw(st.integers(1900, 1999) if legacy else st.integers(1900, 2024))
    month = draw(st.integers(1, 13))  # 13: an impossible month now and then
    day = draw(st.integers(1, 31))
    return f"{year:04d}{month:02d}{day:02d}"[2:] if legacy else f"{year:04d}{month:02d}{day:02d}"


@st.composite
def id_texts(draw: st.DrawFn) -> str | None:
    region = draw(st.sampled_from(REGIONS))
    seq = draw(st.text("0123456789", min_size=3, max_size=3))
    kind = draw(st.sampled_from(["valid18", "legacy15", "bad_check", "garbage", "blank", "none"]))
    if kind == "none":
        return None
    if kind == "blank":
        return draw(st.sampled_from(["", "  ", "\u3000"]))
    if kind == "garbage":
        return draw(st.text(min_size=1, max_size=20))
    if kind == "legacy15":
        text = region + draw(birth_dates(legacy=True)) + seq
    else:
        body = region + draw(birth_dates(legacy=False)) + seq
        check = ric.calc_check_digit(body + "0")
        if kind == "bad_check":
            check = draw(st.sampled_from([c for c in "0123456789X" if c != check]))
        text = body + check
    # corruptions the departments actually deliver
    if draw(st.booleans()):
        text = text.lower()
    if draw(st.booleans()):
        text = text.translate(FULL_WIDTH)
    if draw(st.booleans()):
        text = " " + text + "  "
    if draw(st.integers(0, 9)) == 0:
        cut = draw(st.integers(0, len(text) - 1))
        text = text[:cut] + text[cut + 1 :]
    return text


@settings(max_examples=300, deadline=None)
@given(st.lists(id_texts(), min_size=1, max_size=40))
def test_normalise_agrees_with_stdnum(raws: list[str | None]) -> None:
    number, status = normalise_id_numbers(pd.Series(raws, dtype=object))
    for raw, got_number, got_status in zip(raws, number, status, strict=True):
        want_status, want_number = oracle(raw)
        assert got_status == want_status, raw
        if want_number is not None:
            assert got_number == want_number, raw
            assert ric.is_valid(got_number) or _valid18(got_number)
        elif want_status == "missing":
            assert pd.isna(got_number)
        else:
            # kept, never dropped: the cleaned text
            assert isinstance(got_number, str) and got_number


def test_examples() -> None:
    raws = pd.Series(
        [
            "11010519491231002X",
            " １１０１０５１９４９１２３１００２ｘ ",
            "110105491231002",
            "110105194912310021",
            "110105194902300025",
            "not a number",
            None,
            "",
        ]
    )
    number, status = normalise_id_numbers(raws)
    assert status.tolist() == [
        "valid",
        "valid",
        "upgraded",
        "bad_check",
        "malformed",
        "malformed",
        "missing",
        "missing",
    ]
    assert number.tolist()[:4] == ["11010519491231002X"] * 3 + ["110105194912310021"]
    assert number.iloc[5] == "NOT A NUMBER"
    assert number.index.equals(raws.index)


def test_check_character() -> None:
    got = id_check_character(pd.Series(["11010519491231002", "33070219800101123", "123"]))
    assert got.iloc[0] == "X"
    assert got.iloc[1] == ric.calc_check_digit("33070219800101123" + "0")
    assert pd.isna(got.iloc[2])


@pytest.mark.parametrize("values", [[], [None, None]])
def test_empty_and_all_missing(values: list[str | None]) -> None:
    number, status = normalise_id_numbers(pd.Series(values, dtype=object))
    assert len(number) == len(values)
    assert set(status) <= {"missing"}
