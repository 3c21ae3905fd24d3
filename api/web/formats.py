"""Jinja filters every page may use: amounts, counts, local times, region and grid names.

The filters read the page's language (`lang`) and the app's services from the template's
context, so a template writes `{{ amount|money }}`, `{{ run.started_at|local_time }}`,
`{{ code|region_label }}`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from liveness.services import Services
from liveness.views.area_names import AreaNames

# How each language writes an amount of yuan: ¥1,234.56 in Chinese; the code in English.
CURRENCY = {"zh": "¥{amount}", "en": "CNY {amount}"}


def _lang(context: Context) -> str:
    """Return the page's language from a template context (Chinese by default)."""
    return "en" if context.get("lang") == "en" else "zh"


def _services(context: Context) -> Services:
    """Return the app's services from a template context (every page has its request)."""
    services: Services = context["request"].app.state.services
    return services


def money_text(amount: Decimal | float | int | str | None, lang: str) -> str:
    """Return an amount of yuan with its currency, thousands separators and two decimals."""
    if amount is None or amount == "":
        return ""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return str(amount)
    text = CURRENCY[lang].format(amount=f"{abs(value):,.2f}")
    return f"-{text}" if value < 0 else text


def local_time_text(moment: dt.datetime | None, timezone: str, *, seconds: bool = False) -> str:
    """Return a UTC moment as the agency's local time (a naive one is taken as UTC)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    shown = moment.astimezone(ZoneInfo(timezone))
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def named(code: str | None, name: str | None) -> str:
    """Return a code with its name beside it, or the bare code when it has none."""
    if not code:
        return ""
    return code if not name else f"{code} {name}"


@pass_context
def money(context: Context, amount: Any) -> str:
    """Format an amount of yuan in the page's language: ¥1,234.56 / CNY 1,234.56."""
    return money_text(amount, _lang(context))


@pass_context
def local_time(context: Context, moment: dt.datetime | None, seconds: bool = False) -> str:
    """Format a moment in the agency's time zone (Settings.timezone)."""
    return local_time_text(moment, _services(context).settings.timezone, seconds=seconds)


def number(value: Any) -> str:
    """Format a count with thousands separators; anything else shows as it is."""
    if isinstance(value, bool) or not isinstance(value, int):
        return "" if value is None else str(value)
    return f"{value:,}"


def _names(context: Context) -> AreaNames:
    """Return the app's region and grid names."""
    return _services(context).area_names


@pass_context
def region_name(context: Context, code: str | None) -> str:
    """Return a region's name in the page's language, or nothing."""
    return _names(context).region(code, _lang(context)) or ""


@pass_context
def grid_name(context: Context, code: str | None) -> str:
    """Return a grid's name in the page's language, or nothing."""
    return _names(context).grid(code, _lang(context)) or ""


@pass_context
def region_label(context: Context, code: str | None) -> str:
    """Return a region code with its name beside it (the bare code when it has none)."""
    return named(code, _names(context).region(code, _lang(context)))


@pass_context
def grid_label(context: Context, code: str | None) -> str:
    """Return a grid code with its name beside it (the bare code when it has none)."""
    return named(code, _names(context).grid(code, _lang(context)))


def install(env: Environment) -> None:
    """Register the filters on the pages' template environment."""
    env.filters.update(
        money=money, local_time=local_time, number=number, region_name=region_name,
        grid_name=grid_name, region_label=region_label, grid_label=grid_label,
    )  # fmt: skip
