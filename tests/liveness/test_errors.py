"""One error root: every exception the engine defines is a LivenessError, drawn in the tree at the
top of liveness/errors.py and in README.md's exit-code table with its code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import cache
from pathlib import Path

import liveness.errors
from liveness.errors import LivenessError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("liveness", "connectors", "models", "api")


@cache
def defined_exceptions() -> tuple[type[BaseException], ...]:
    """Return every exception class defined (not merely imported) in the engine's packages."""
    found: set[type[BaseException]] = set()
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names = [package_name] + [
            info.name
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}.")
            if ".migrations" not in info.name  # Alembic's env.py runs migrations on import
        ]
        for name in names:
            module = importlib.import_module(name)
            found.update(
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
            )
    return tuple(sorted(found, key=lambda error: f"{error.__module__}.{error.__qualname__}"))


def engine_errors() -> list[type[LivenessError]]:
    """Return the root and every subclass of it the engine defines."""
    return [error for error in defined_exceptions() if issubclass(error, LivenessError)]


def docstring_part(start: str) -> list[str]:
    """Return the lines of liveness/errors.py's docstring from the one starting `start` to a blank."""
    lines = (liveness.errors.__doc__ or "").splitlines()
    first = next(index for index, line in enumerate(lines) if line.startswith(start))
    part = []
    for line in lines[first:]:
        if not line.strip():
            break
        part.append(line)
    return part


def tree_code(tree: list[str], name: str) -> int | None:
    """Return the code the tree gives `name`: on its own entry, else the entry it is listed under."""
    word = re.compile(rf"\b{name}\b")
    own = [line for line in tree if re.search(rf"\b{name} \[\d+\]", line)]
    if own:
        return int(re.findall(rf"\b{name} \[(\d+)\]", own[0])[0])
    mentioned = next((index for index, line in enumerate(tree) if word.search(line)), None)
    if mentioned is None:
        return None
    for line in reversed(tree[: mentioned + 1]):
        codes = re.findall(r"\[(\d+)\]", line)
        if codes:
            return int(codes[-1])
    return None


def readme_table() -> dict[int, str]:
    """Return README.md's exit-code table: the cause of each code, in the table's order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", section, flags=re.MULTILINE)
    codes = [int(code) for code, _ in rows]
    assert codes == sorted(set(codes)), "one table, each code once, in order"
    return {int(code): cause for code, cause in rows}


def test_every_exception_is_in_the_tree_or_named_outside_it() -> None:
    """A new exception class joins the root, or the docstring says why it stays outside."""
    outside = " ".join(docstring_part("Outside the root"))
    strays = [
        f"{error.__module__}.{error.__qualname__}"
        for error in defined_exceptions()
        if not issubclass(error, LivenessError)
        and f"{error.__module__}.{error.__qualname__}" not in outside
    ]
    assert strays == []


def test_the_tree_draws_every_error_with_its_exit_code() -> None:
    """The tree at the top of liveness/errors.py is current: each error, each code."""
    tree = docstring_part("LivenessError [")
    drawn = {error.__name__: tree_code(tree, error.__name__) for error in engine_errors()}
    assert drawn == {error.__name__: error.exit_code for error in engine_errors()}


def test_every_exit_code_is_in_the_readme_and_distinct_per_cause() -> None:
    """Each error, or the nearest ancestor named, sits in one README row: the row of its code."""
    errors = engine_errors()
    names = {error.__name__ for error in errors}
    named: dict[str, list[int]] = {}
    for code, cause in readme_table().items():
        for name in re.findall(r"`([A-Z][a-z][A-Za-z]*)`", cause):
            named.setdefault(name, []).append(code)
    assert set(named) <= names, "the table names only errors that exist"
    assert {name: codes for name, codes in named.items() if len(codes) > 1} == {}
    rows = {}
    for error in errors:
        covering = next(ancestor for ancestor in error.__mro__ if ancestor.__name__ in named)
        rows[error.__name__] = named[covering.__name__][0]
    assert rows == {error.__name__: error.exit_code for error in errors}
