"""Same arguments, same bytes; another seed, other bytes."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

from liveness.simulate import simulate_city


def digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    start = date(2024, 11, 15)
    first = simulate_city(persons=3000, start=start, days=60, seed=11, out=tmp_path / "a")
    second = simulate_city(
        persons=3000, start=start, days=60, seed=11, out=tmp_path / "b" / "nested"
    )
    other = simulate_city(persons=3000, start=start, days=60, seed=12, out=tmp_path / "c")
    a, b, c = digests(tmp_path / "a"), digests(tmp_path / "b" / "nested"), digests(tmp_path / "c")
    assert a == b
    assert first.files == len(a) and first.traces == second.traces
    assert set(a) == set(c)
    assert a["truth.csv"] != c["truth.csv"]
    assert sum(a[k] != c[k] for k in a) > len(a) * 0.9
    assert other.persons == 3000


def test_short_period_without_silence(tmp_path: Path) -> None:
    summary = simulate_city(persons=200, start=date(2024, 2, 29), days=3, seed=1, out=tmp_path)
    assert len(list((tmp_path / "transit").glob("transit_*.csv"))) == 4  # 3 days + 1 resend
    assert len(list((tmp_path / "medical").glob("*.csv"))) == 2
    assert '"silent": {}' in (tmp_path / "anomalies.json").read_text("utf-8")
    assert summary.persons == 200
