"""The what-if pages: a stored comparison drawn as charts, each with its figures as a table."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from liveness.whatif import save_report
from tests.api.conftest import World
from tests.web.conftest import fresh, signed_in


def side(face: int, silent: int, paid: str) -> dict[str, Any]:
    """Return one policy's figures, in the shape `liveness what-if` keeps."""
    run = {
        "as_of": "2025-04-30", "strong": 300, "medium": 40, "weak": 10, "deceased": 3,
        "face_requests": face, "home_visits": 4, "death_reviews": 0,
        "silent_certifications": silent, "suspensions": 2,
    }  # fmt: skip
    return {
        "runs": [run],
        "totals": {"face_requests": face, "home_visits": 4, "death_reviews": 0,
                   "unanswered": 3, "silent_certifications": silent, "suspensions": 2,
                   "reinstatements": 0},
        "grids": {"330702-001-01": {"face_requests": face, "home_visits": 4}},
        "deaths": {"matched": 3, "caught": 3, "after_first_run": 1, "after_first_run_caught": 1,
                   "median_days": 12.0, "p95_days": 12.0},
        "suspended_then_proved_alive": 0,
        "paid_after_death": paid,
        "replay": {},
    }  # fmt: skip


REPORT = {
    "period": {"from": "2025-01-01", "to": "2025-04-30"},
    "run_dates": ["2025-04-30"],
    "policies": {"live": {"folder": "/etc/liveness", "files": {}},
                 "candidate": {"folder": "/tmp/recent-60", "files": {}}},
    "history": {"deliveries": 10, "outcomes_recorded": 2},
    "live": side(52, 146, "7815.59"),
    "candidate": side(61, 131, "7000.00"),
    "overpayment_avoided": "815.59",
}  # fmt: skip


def test_a_stored_what_if_reads_as_charts_beside_their_figures(web_world: World) -> None:
    report_id = save_report(web_world.services, REPORT, now=dt.datetime(2025, 5, 2, 8, 0))
    assert report_id.startswith("20250502T080000")
    client = signed_in(web_world, "operator")
    listing = client.get("/web/whatif")
    assert listing.status_code == 200
    assert f'href="/web/whatif/{report_id}"' in listing.text and "/tmp/recent-60" in listing.text
    zh = client.get(f"/web/whatif/{report_id}").text
    assert "政策推演" in zh and "候选政策" in zh
    page = client.get(f"/web/whatif/{report_id}?lang=en")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert text.count('<svg class="chart"') == 4
    assert '<dd data-amount="avoided">CNY 815.59</dd>' in text
    assert "Face requests" in text and '<td class="num">61</td>' in text
    assert "330702-001-01" in text
    # A report kept before the estimator's notes existed shows none; a newer one says why the
    # candidate's enabled estimator certified nobody.
    assert 'data-notes="estimator"' not in text
    note = "estimator enabled but not used: no estimator artifact saved yet"
    noted = {**REPORT, "candidate": {**REPORT["candidate"], "estimator_notes": [note]},
             "live": {**REPORT["live"], "estimator_notes": []}}  # fmt: skip
    noted_id = save_report(web_world.services, noted, now=dt.datetime(2025, 5, 3, 8, 0))
    shown = html.unescape(client.get(f"/web/whatif/{noted_id}?lang=en").text)
    assert f"The learned estimator (candidate): {note}" in shown
    assert shown.count('data-notes="estimator"') == 1
    # No such report, or a name that is no report's: absent, never a file read elsewhere.
    assert client.get("/web/whatif/20990101T000000").status_code == 404
    assert client.get("/web/whatif/..%2Fstate").status_code == 404
    # The pages are for those who read runs: not a grid worker's, and not without signing in.
    assert signed_in(web_world, "grid_worker").get("/web/whatif").status_code == 403
    assert fresh(web_world).get("/web/whatif").status_code == 303
