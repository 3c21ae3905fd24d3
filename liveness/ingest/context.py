"""What an ingest keeps across deliveries (roll, cards, record indexes); a delivery's report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from sqlalchemy.orm import Session

from connectors import SOURCES, SourceConfig, TraceSpec
from liveness.evidence.records.index import RecordIndex
from liveness.evidence.store import EvidenceStore
from liveness.identity import CardIndex, RollIndex
from liveness.ingest.relink import relinked_through


@dataclass
class DeliveryReport:
    """What became of one delivery's rows."""

    source: str
    file: str
    status: str
    rows_read: int = 0
    loaded: int = 0
    redelivered: int = 0
    quarantined: int = 0
    unmatched: int = 0
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the report as a JSON-able dict."""
        return asdict(self)


@dataclass
class IngestContext:
    """What every delivery of one ingest needs: configuration, the store, cached indexes."""

    configs: Mapping[str, SourceConfig]
    store: EvidenceStore
    timezone: str
    # The confidence of a death record matched on name, sex and birth date (the policy's).
    demographic_confidence: float
    _roll: RollIndex | None = field(default=None, repr=False)
    _cards: CardIndex | None = field(default=None, repr=False)
    # The newest roll or card delivery the cached indexes are known to hold (read before
    # they load): the last relink's, since card holders catch up with the roll only there.
    _links_version: int | None = field(default=None, repr=False)
    # Per trace source, every record it holds: re-deliveries are found across months.
    _records: dict[str, RecordIndex] = field(default_factory=dict, repr=False)

    def trace_of(self, source: str) -> TraceSpec | None:
        """Return how a source's rows become evidence, None if it is no trace source."""
        config = self.configs.get(source)
        if config is None:
            builtin = SOURCES.get(source)
            return builtin.trace if builtin is not None else None
        return config.trace

    def roll(self, session: Session) -> RollIndex:
        """Return the roll index, loading it once."""
        if self._roll is None:
            self._note_links_version(session)
            self._roll = RollIndex.load(session)
        return self._roll

    def cards(self, session: Session) -> CardIndex:
        """Return the card index, loading it once."""
        if self._cards is None:
            self._note_links_version(session)
            self._cards = CardIndex.load(session)
        return self._cards

    @property
    def links_version(self) -> int | None:
        """Return the newest roll or card delivery the loaded indexes hold, None if unknown."""
        return self._links_version

    def _note_links_version(self, session: Session) -> None:
        # Read before the index loads: a change landing meanwhile leaves the stamp older,
        # so a relink retries these traces rather than trusting them.
        if self._links_version is None:
            self._links_version = relinked_through(session)

    def records(self, session: Session, source: str) -> RecordIndex:
        """Return the record index of a trace source, opened once per ingest."""
        index = self._records.get(source)
        if index is None:
            index = self._records[source] = self.store.record_index(session, source=source)
        return index

    def forget_indexes(self) -> None:
        """Drop the roll and card indexes after the roll or the cards changed."""
        self._roll = None
        self._cards = None
        self._links_version = None

    def forget_records(self) -> None:
        """Drop the record indexes after a delivery rolled back: reopened, they drop its runs."""
        self._records.clear()
