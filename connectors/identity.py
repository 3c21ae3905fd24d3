"""Resident identity numbers (GB 11643): vectorised clean-up, upgrade and validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["ID_STATUSES", "id_check_character", "normalise_id_numbers"]

ID_STATUSES = ("valid", "upgraded", "bad_check", "malformed", "missing")

# ISO 7064 MOD 11-2 weights of the 17 body digits, and the check character per remainder.
_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _digits(fixed: pa.Array, width: int) -> np.ndarray:
    """Return an (n, width) uint8 matrix of the digit values of equal-width ASCII strings."""
    if len(fixed) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    # equal-width, null-free strings sit back to back in the data buffer: view it as a matrix
    binary = pc.cast(fixed, pa.large_binary())
    _, offsets_buf, data_buf = binary.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[binary.offset :]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[0] + width * len(fixed)]
    return data.reshape(-1, width) - np.uint8(48)


def _check_chars(body: np.ndarray) -> np.ndarray:
    """Return the check characters (uint8 ASCII) of an (n, 17) digit matrix."""
    return _CHECK[(body.astype(np.int64) @ _WEIGHTS) % 11]


def _valid_dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    month_ok = (month >= 1) & (month <= 12)
    days = _DAYS[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    return (year >= 1) & month_ok & (day >= 1) & (day <= days)


def _number(m: np.ndarray, start: int, width: int) -> np.ndarray:
    out = np.zeros(len(m), dtype=np.int64)
    for i in range(start, start + width):
        out = out * 10 + m[:, i]
    return out


def id_check_character(first17: pd.Series) -> pd.Series:
    """Return the MOD 11-2 check character of each 17-digit body (NA where not 17 digits)."""
    arr = pa.array(first17.astype("string"), type=pa.string(), from_pandas=True)
    ok = pc.fill_null(pc.match_substring_regex(arr, r"^[0-9]{17}$"), False)
    idx = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    chars = _check_chars(_digits(arr.take(pa.array(idx)), 17))
    out = np.full(len(arr), None, dtype=object)
    out[idx] = chars.view("S1").astype(str)
    return pd.Series(out, index=first17.index, dtype="string")


def normalise_arrow(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Normalise an Arrow array of identity numbers; return (number, status) string arrays."""
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    # NFKC turns full-width digits and letters into ASCII; strip then upper-case the x
    text = pc.utf8_upper(pc.utf8_trim_whitespace(pc.utf8_normalize(values, "NFKC")))
    n = len(text)
    status = np.full(n, "malformed", dtype=object)
    number = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    missing = pc.fill_null(pc.equal(text, ""), True).to_numpy(zero_copy_only=False)
    number[missing] = None
    status[missing] = "missing"

    is18 = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{17}[0-9X]$"), False)
    is15 = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{15}$"), False)
    i18 = np.flatnonzero(is18.to_numpy(zero_copy_only=False))
    i15 = np.flatnonzero(is15.to_numpy(zero_copy_only=False))

    if len(i18):
        m = _digits(text.take(pa.array(i18)), 18)
        date_ok = _valid_dates(_number(m, 6, 4), _number(m, 10, 2), _number(m, 12, 2))
        check_ok = _check_chars(m[:, :17]) == (m[:, 17] + np.uint8(48))
        status[i18[date_ok & check_ok]] = "valid"
        status[i18[date_ok & ~check_ok]] = "bad_check"
    if len(i15):
        m15 = _digits(text.take(pa.array(i15)), 15)
        # legacy numbers carry a two-digit year of the 1900s: insert the century, add a check
        body = np.concatenate(
            [m15[:, :6], np.full((len(i15), 2), [1, 9], dtype=np.uint8), m15[:, 6:]], axis=1
        )
        date_ok = _valid_dates(_number(body, 6, 4), _number(body, 10, 2), _number(body, 12, 2))
        full = np.concatenate([body + np.uint8(48), _check_chars(body)[:, None]], axis=1)
        upgraded = full.view("S18").ravel().astype(str)
        good = i15[date_ok]
        number[good] = upgraded[date_ok]
        status[good] = "upgraded"
    return pa.array(number, pa.string()), pa.array(status, pa.string())


def normalise_id_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Normalise identity numbers; return (number, status) aligned with ``values``.

    ``number`` is the 18-character number where valid or upgraded from 15 digits, otherwise
    the cleaned text (kept, never dropped; NA when blank). ``status`` is one of
    ``valid``, ``upgraded``, ``bad_check``, ``malformed``, ``missing``.
    """
    if values.dtype == object:
        values = values.map(lambda v: v if v is None or isinstance(v, str) else str(v))
    arr = pa.array(values, from_pandas=True)
    number, status = normalise_arrow(arr)
    dtype = pd.StringDtype("pyarrow")
    return (
        pd.Series(number.to_pandas(), index=values.index, dtype=dtype, name=values.name),
        pd.Series(status.to_pandas(), index=values.index, dtype=dtype, name="status"),
    )
