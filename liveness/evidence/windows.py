"""Window reads of the evidence store: the parts and corrections a read needs, as arrays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from liveness.evidence.store import EvidenceStore


@dataclass(frozen=True)
class TraceWindow:
    """Traces of one source read from the store, as aligned arrays.

    `kind` holds codes into the vocabulary the caller asked for; -1 is a kind outside it.
    `person_id` is -1 for traces that matched nobody. `sorted_by_person` says the batch is
    ordered by person then day.
    """

    source: str
    person_id: npt.NDArray[np.int32]
    day: npt.NDArray[np.int32]
    kind: npt.NDArray[np.int16]
    sorted_by_person: bool = False

    def __len__(self) -> int:
        return int(self.person_id.shape[0])


@dataclass(frozen=True)
class _Corrections:
    """The latest correction of every corrected record of one source."""

    hashes: npt.NDArray[np.uint64]
    latest: pa.Table


@dataclass(frozen=True)
class WindowPart:
    """One part of a window read: its file and the range of its days (store day numbers)."""

    path: Path
    min_day: int
    max_day: int


@dataclass(frozen=True, eq=False)
class WindowPlan:
    """What a window read of one source needs: its parts and its corrections.

    Reads only files: it may be read in another thread than the session that made it.
    """

    store: EvidenceStore
    source: str
    parts: list[WindowPart]
    corrections: _Corrections | None
    code_of: dict[str, int]
    low: int
    high: int

    def inside(self, part: WindowPart) -> bool:
        """Say whether every day of `part` lies in the window."""
        return part.min_day >= self.low and part.max_day <= self.high

    def corrections_key(self) -> str:
        """Return a digest of the source's corrected records: what a part's reading depends on.

        A part's traces are its rows less those of corrected records, so whatever is derived
        from reading one part stays exact while this key (and the part's file) is unchanged.
        """
        if self.corrections is None:
            return "none"
        return hashlib.sha256(self.corrections.hashes.tobytes()).hexdigest()[:16]

    def batches(self, persons: tuple[int, int] | None = None) -> Iterator[TraceWindow]:
        """Yield every batch of the window: each part's, then the corrections'.

        With `persons` (ids [lo, hi)), each part's row groups that may hold them (`read_part`).
        """
        for part in self.parts:
            yield from self.read_part(part, persons)
        yield from self.read_corrections()

    def read_part(
        self, part: WindowPart, persons: tuple[int, int] | None = None
    ) -> Iterator[TraceWindow]:
        """Yield one part's traces in the window, corrected records left out, in batches.

        With `persons` (ids [lo, hi)), only the row groups that may hold some of them are read
        (a part clustered by person holds a range in a few); other persons' rows still come.
        """
        wanted = ["person_id", "day", "kind"]
        if self.corrections is not None:
            wanted.append("record_hash")
        inside = self.inside(part)
        for table, clustered in self.store.row_group_batches(
            part.path, wanted, low=self.low, high=self.high, persons=persons
        ):
            if not inside:
                table = table.filter(_in_window(table["day"], self.low, self.high))
            if self.corrections is not None:
                table = table.filter(_not_corrected(table["record_hash"], self.corrections.hashes))
            yield _trace_window(self.source, table, self.code_of, sorted_by_person=clustered)

    def read_corrections(self) -> Iterator[TraceWindow]:
        """Yield the latest correction of each corrected record, where it lies in the window."""
        if self.corrections is None:
            return
        latest = self.corrections.latest.select(["person_id", "day", "kind"])
        latest = latest.filter(_in_window(latest["day"], self.low, self.high))
        if latest.num_rows:
            yield _trace_window(self.source, latest, self.code_of, sorted_by_person=False)


def _in_window(days: pa.ChunkedArray | pa.Array, low: int, high: int) -> pa.ChunkedArray:
    """Return whether each day lies in [low, high]."""
    return pc.and_(pc.greater_equal(days, low), pc.less_equal(days, high))


def _not_corrected(hashes: pa.ChunkedArray, corrected: npt.NDArray[np.uint64]) -> pa.Array:
    """Return whether each row's record has no correction anywhere."""
    values = hashes.to_numpy()
    at = np.minimum(np.searchsorted(corrected, values), corrected.size - 1)
    return pa.array(corrected[at] != values)


def _trace_window(
    source: str, table: pa.Table, code_of: dict[str, int], *, sorted_by_person: bool
) -> TraceWindow:
    """Turn a (person_id, day, kind) table into arrays, kinds coded through their dictionary."""
    codes = [_kind_codes(chunk, code_of) for chunk in table["kind"].chunks]
    return TraceWindow(
        source=source,
        person_id=table["person_id"].to_numpy().astype(np.int32, copy=False),
        day=table["day"].to_numpy().astype(np.int32, copy=False),
        kind=np.concatenate(codes) if codes else np.empty(0, dtype=np.int16),
        sorted_by_person=sorted_by_person,
    )


def _kind_codes(chunk: pa.Array, code_of: dict[str, int]) -> npt.NDArray[np.int16]:
    """Map one chunk of kinds to codes; only its dictionary is looked at as strings."""
    if not isinstance(chunk, pa.DictionaryArray):
        chunk = chunk.dictionary_encode()
    dictionary = chunk.dictionary.to_pylist()
    # The extra last entry is the code of a missing kind.
    lookup = np.array([code_of.get(kind, -1) for kind in dictionary] + [-1], dtype=np.int16)
    indices = pc.fill_null(chunk.indices, len(dictionary)).to_numpy()
    return lookup[indices]
