"""The layers point one way: entry points and `api` -> the domain core -> `connectors`, `models`.

Read from the source with `ast` (imports inside functions count too), so a lazy import cannot
hide an arrow against the rule. One module of the core is a leaf every layer may import: the
error root `liveness.errors`, which itself imports nothing.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "liveness.entry"
LEAF = "liveness.errors"


def module_name(path: Path) -> str:
    """Return the dotted name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """Yield (line, dotted module) for every import of a file, relative ones resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from liveness import entry` imports liveness.entry: name each imported member too.
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def within(name: str, package: str) -> bool:
    """Return whether a dotted module is `package` or inside it."""
    return name == package or name.startswith(package + ".")


def sources(package: str) -> list[Path]:
    """Return the Python files of a top-level package, migrations excepted (Alembic's own)."""
    return sorted(path for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts)


def is_forbidden(name: str, forbidden: tuple[str, ...], *, allowed: str = "") -> bool:
    """Return whether importing `name` breaks the rule; `allowed` (and its members) never does."""
    if allowed and within(name, allowed):
        return False
    return any(within(name, target) for target in forbidden)


def violations(
    package: str, forbidden: tuple[str, ...], *, exempt: str | None = None, allowed: str = ""
) -> list[str]:
    """Return `module:line imports name` for every import of a forbidden package."""
    found = []
    for path in sources(package):
        module = module_name(path)
        if exempt is not None and within(module, exempt):
            continue
        for line, name in imported(path, module):
            if is_forbidden(name, forbidden, allowed=allowed):
                found.append(f"{module}:{line} imports {name}")
    return sorted(set(found))


def test_the_core_imports_no_entry_point_and_not_the_api() -> None:
    """No module under liveness/ but liveness/entry/ imports liveness.entry or api."""
    assert (ROOT / "liveness" / "entry").is_dir()
    assert violations("liveness", (ENTRY, "api"), exempt=ENTRY) == []


@pytest.mark.parametrize("package", ["connectors", "models"])
def test_connectors_and_models_import_neither_liveness_nor_the_api(package: str) -> None:
    """The bottom layers import nothing of liveness but the error root's leaf, nothing of api."""
    assert violations(package, ("liveness", "api"), allowed=LEAF) == []


def test_the_error_root_is_a_leaf() -> None:
    """liveness.errors (and the package file its import runs) import only the standard library."""
    for path, module in (
        (ROOT / "liveness" / "errors.py", LEAF),
        (ROOT / "liveness" / "__init__.py", "liveness"),
    ):
        names = {name.partition(".")[0] for _, name in imported(path, module)}
        assert names <= set(sys.stdlib_module_names) | {"__future__"}, path


def test_only_the_leaf_is_allowed() -> None:
    """The exception covers the leaf and its members, not the package around it or a sibling."""
    names = [
        "liveness.errors",
        "liveness.errors.LivenessError",
        "liveness",  # `from liveness import errors` names the package first
        "liveness.errors_extra",
        "liveness.access.Principal",
        "api.errors",
    ]
    refused = [name for name in names if is_forbidden(name, ("liveness", "api"), allowed=LEAF)]
    assert refused == [
        "liveness",
        "liveness.errors_extra",
        "liveness.access.Principal",
        "api.errors",
    ]


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """A lazy import inside a function is found, and a relative one is resolved."""
    source = tmp_path / "reports.py"
    source.write_text(
        "import typer\n\n\ndef serve() -> None:\n    from api.app import create_app\n"
        "    from ..entry import demo\n",
        encoding="utf-8",
    )
    names = {(line, name) for line, name in imported(source, "liveness.views.reports")}
    assert (1, "typer") in names
    assert (5, "api.app") in names
    assert (6, "liveness.entry.demo") in names
