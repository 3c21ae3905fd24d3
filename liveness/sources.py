"""The trace sources a policy is read with: the built-in ones and those sources.toml declares."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from connectors import SOURCES, ConnectorError, TraceSpec, load_source_configs, trace_specs
from liveness.settings import PACKAGED_CONFIG

__all__ = ["BUILTIN_TRACES", "group_codes", "source_labels", "traces_beside"]

# The built-in trace sources' specs, in their order.
BUILTIN_TRACES: Mapping[str, TraceSpec] = {
    name: spec.trace for name, spec in SOURCES.items() if spec.trace is not None
}
_SOURCES_FILE = "sources.toml"


def traces_beside(path: Path | None) -> dict[str, TraceSpec]:
    """Return the trace sources a policy file at `path` is read with.

    Those of the sources.toml in the same folder; where there is none (or it does not load:
    its own check reports why), those of the shipped one; failing that, the built-in ones.
    """
    folders = ([] if path is None else [path.parent]) + [PACKAGED_CONFIG]
    for folder in folders:
        candidate = folder / _SOURCES_FILE
        if not candidate.is_file():
            continue
        try:
            return trace_specs(load_source_configs(candidate))
        except ConnectorError:
            continue
    return dict(BUILTIN_TRACES)


def group_codes(
    sources: tuple[str, ...], traces: Mapping[str, TraceSpec]
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Return the independence groups of `sources` (in first-seen order) and each one's code.

    A source without a spec is a group of its own.
    """
    names = [traces[s].group if s in traces else s for s in sources]
    groups = tuple(dict.fromkeys(names))
    return groups, tuple(groups.index(name) for name in names)


def source_labels(traces: Mapping[str, TraceSpec], lang: str) -> dict[str, str]:
    """Return each trace source's name in words in `lang` ("zh" or "en")."""
    return {name: spec.label.get(lang, name) for name, spec in traces.items()}
