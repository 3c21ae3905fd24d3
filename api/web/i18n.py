"""The pages' texts in Chinese (the default) and English, from messages.toml."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from liveness.errors import ConfigurationError

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"
MESSAGES_PATH = Path(__file__).with_name("messages.toml")


class MessagesInvalid(ConfigurationError):
    """messages.toml lacks a language for some key; the message names them."""


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """Return every message by key and language, refusing a key without both languages."""
    with MESSAGES_PATH.open("rb") as handle:
        raw = tomllib.load(handle)
    incomplete = sorted(k for k, v in raw.items() if set(v) != set(LANGS))
    if incomplete:
        raise MessagesInvalid(f"{MESSAGES_PATH}: keys without both zh and en: {incomplete}")
    return raw


def pick_lang(value: str | None) -> Lang:
    """Return a supported language from a cookie or query value (default: Chinese)."""
    return "en" if value == "en" else DEFAULT_LANG


def translate(lang: Lang, key: str, **values: object) -> str:
    """Return a message in `lang`, with `{name}` fields filled; an unknown key shows itself."""
    entry = catalogue().get(key)
    text = key if entry is None else entry[lang]
    return text.format(**values) if values else text


def label(lang: Lang, kind: str, value: object) -> str:
    """Return a domain value in words (list_reason_deceased -> 死亡); an unknown one as it is."""
    key = f"{kind}_{value}"
    return translate(lang, key) if key in catalogue() else str(value)
