"""Identity numbers (GB 11643) and Chinese names for the simulated population."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]

# Weights of ISO 7064 MOD 11-2 for positions 1..17: 2^(17-i) mod 11.
_WEIGHTS = np.array([pow(2, 17 - i, 11) for i in range(17)], dtype=np.int64)
_CHECK_CHARS = np.array(list("10X98765432"))

# Common surnames with rough frequency weights (most frequent first).
_SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
)
_MALE_GIVEN = list("国建华明军伟平志强文德荣永金福生海林清春成祥根水发福宝庆忠良贵新兴学友义仁")
_FEMALE_GIVEN = list("秀英兰芳玉珍凤琴桂梅花霞萍美丽娟云月素爱仙菊翠彩莲香巧惠娥琳静红燕")


def check_characters(id17: IntArray) -> StrArray:
    """Return the MOD 11-2 check character for each 17-digit body."""
    digits = np.empty((id17.shape[0], 17), dtype=np.int64)
    rest = id17.copy()
    for pos in range(16, -1, -1):
        digits[:, pos] = rest % 10
        rest //= 10
    total = digits @ _WEIGHTS
    result: StrArray = _CHECK_CHARS[total % 11]
    return result


def compose_id17(*, region: IntArray, birth_ymd: IntArray, seq: IntArray) -> IntArray:
    """Return the 17-digit body: region code, birth date YYYYMMDD and sequence number."""
    body: IntArray = region * 10**11 + birth_ymd * 10**3 + seq
    return body


def full_id_numbers(id17: IntArray) -> StrArray:
    """Return the 18-character identity numbers for the 17-digit bodies."""
    result: StrArray = np.char.add(id17.astype("U17"), check_characters(id17))
    return result


def unique_sequences(
    *, rng: np.random.Generator, region: IntArray, birth_ymd: IntArray, male: npt.NDArray[np.bool_]
) -> IntArray:
    """Draw 3-digit sequence numbers (odd for men, even for women) unique per region and birth."""
    n = region.shape[0]
    seq = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    # Redraw only the colliding rows; collisions are rare so this converges in a few rounds.
    while todo.size:
        half = rng.integers(0, 500, size=todo.size)
        seq[todo] = np.where(male[todo], 2 * half + 1, np.maximum(2 * half, 2))
        body = compose_id17(region=region, birth_ymd=birth_ymd, seq=seq)
        _, first = np.unique(body, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        todo = np.flatnonzero(dup)
    return seq


def chinese_names(*, rng: np.random.Generator, male: npt.NDArray[np.bool_]) -> StrArray:
    """Draw a surname and a one- or two-character given name per person."""
    n = male.shape[0]
    ranks = np.arange(1, len(_SURNAMES) + 1, dtype=np.float64)
    weights = 1.0 / ranks**0.8
    surnames = np.array(_SURNAMES)[rng.choice(len(_SURNAMES), size=n, p=weights / weights.sum())]
    male_pool = np.array(_MALE_GIVEN)
    female_pool = np.array(_FEMALE_GIVEN)
    first = np.where(
        male,
        male_pool[rng.integers(0, male_pool.size, size=n)],
        female_pool[rng.integers(0, female_pool.size, size=n)],
    )
    second = np.where(
        male,
        male_pool[rng.integers(0, male_pool.size, size=n)],
        female_pool[rng.integers(0, female_pool.size, size=n)],
    )
    two_chars = rng.random(n) < 0.7
    given = np.where(two_chars, np.char.add(first, second), first)
    result: StrArray = np.char.add(surnames, given)
    return result


def to_legacy_15(id18: StrArray) -> StrArray:
    """Return the legacy 15-digit form: drop the century digits and the check character."""
    result: StrArray = np.strings.add(np.strings.slice(id18, 0, 6), np.strings.slice(id18, 8, 17))
    return result


def to_fullwidth(id18: StrArray) -> StrArray:
    """Return the numbers written with full-width digits."""
    result: StrArray = id18.astype("U18")
    if result.size == 0:
        return result
    for ascii_char, wide in zip("0123456789X", "０１２３４５６７８９Ｘ", strict=True):
        result = np.strings.replace(result, ascii_char, wide)
    return result


def with_wrong_check(id18: StrArray, *, rng: np.random.Generator) -> StrArray:
    """Return the numbers with a different, wrong check character."""
    chars = np.array(list("0123456789X"))
    last = np.strings.slice(id18, 17, 18)
    index = np.where(last == "X", 10, np.char.find("0123456789", last).clip(0))
    shifted = (index + rng.integers(1, chars.size, size=id18.shape[0])) % chars.size
    result: StrArray = np.strings.add(np.strings.slice(id18, 0, 17), chars[shifted])
    return result
