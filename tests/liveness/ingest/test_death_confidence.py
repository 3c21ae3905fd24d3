"""A death record matched on name, sex and birth date carries the policy's confidence."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from models import DeathMatch, DeathRecord
from tests.liveness.conftest import REPO
from tests.liveness.ingest.test_ingest import REGISTRY
from tests.liveness.review.test_priority import policy_copy

CREMATION = "record_id,id_number,name,sex,birth_date,died_on,cremated_on\n"
# No identity number: each matches its person of the roll on name, sex and birth date.
EARLY = "D1,,张三,M,1945-01-01,2025-01-10,2025-01-12\n"  # arrives before the roll: relinked
LATE = "D2,,李四,F,1950-02-02,2025-01-20,2025-01-22\n"  # arrives after it: matched on loading


def _confidences(url: str, config: Path, folder: Path) -> dict[str, tuple[str, float]]:
    """Load a death record, the roll, then another record; return each one's match."""
    folder.mkdir()
    services = Services(Settings(database_url=url, evidence_dir=folder / "evidence",
                                 config_dir=config))  # fmt: skip
    upgrade(services.engine)
    for name, source, text, encoding in (
        ("early.csv", "cremation", CREMATION + EARLY, "gb18030"),
        ("registry.csv", "registry", REGISTRY, "utf-8"),
        ("late.csv", "cremation", CREMATION + LATE, "gb18030"),
    ):
        path = folder / name
        path.write_bytes(text.encode(encoding))
        (report,) = ingest_paths(services, source=source, paths=[path])
        assert report.error is None and report.quarantined == 0, report
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(DeathRecord.record_id, DeathRecord.match, DeathRecord.confidence)
        ).all()
    return {record: (str(match), confidence) for record, match, confidence in rows}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_demographic_match_has_the_policys_confidence(
    backend: str, database_url_factory: Callable[[str], str], tmp_path: Path
) -> None:
    demographic = str(DeathMatch.DEMOGRAPHIC)
    shipped = _confidences(database_url_factory(backend), REPO / "config", tmp_path / "a")
    assert shipped == {"D1": (demographic, 0.9), "D2": (demographic, 0.9)}
    changed = policy_copy(
        tmp_path, {"demographic_confidence = 0.9": "demographic_confidence = 0.75"}
    )
    other = _confidences(database_url_factory(backend), changed, tmp_path / "b")
    assert other == {"D1": (demographic, 0.75), "D2": (demographic, 0.75)}
