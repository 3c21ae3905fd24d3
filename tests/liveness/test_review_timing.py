"""Reviews just in time, and the strongest night of a renewal window certifying silently."""

from __future__ import annotations

import datetime as dt

from models import TaskKind
from tests.liveness import test_workflow as workflow
from tests.liveness.test_workflow import P1, City

# P1's certification (last_certified_on 2024-06-01, 12 months) ends on 2025-06-01; its renewal
# window of 120 days opens on 2025-02-01. A review needs 15 (face) + 30 (visit) + 5 (notice)
# days: with nightly runs it opens on 2025-04-12, 50 days before the end.
END = dt.date(2025, 6, 1)
LEAD = 15 + 30 + 5
WINDOW_OPENS = dt.date(2025, 2, 1)


city = workflow.city  # the fixture: the three-person roll, on both backends


def test_a_review_opens_at_the_last_nightly_run_that_leaves_it_time(city: City) -> None:
    opens = END - dt.timedelta(days=LEAD)
    assert opens == dt.date(2025, 4, 12)
    # The renewal window is open since 02-01, but the data may still certify P1: nobody asks.
    for day in ("2025-04-09", "2025-04-10", "2025-04-11"):
        city.run(day)
        assert city.task("P1", TaskKind.HOME_VISIT) is None
    city.run("2025-04-12")
    task = city.task("P1", TaskKind.HOME_VISIT)
    assert task is not None and task.opened_on == opens
    # The visit is due before the certification ends, with the face verification's days and
    # the notice's to spare.
    assert task.due_on == opens + dt.timedelta(days=30) < END


def test_a_weekly_schedule_opens_the_review_one_run_earlier(city: City) -> None:
    city.run("2025-03-29")
    # A week after the last run: the next one is expected on 04-12, still in time.
    city.run("2025-04-05")
    assert city.task("P1", TaskKind.HOME_VISIT) is None
    city.run("2025-04-06")
    assert city.task("P1", TaskKind.HOME_VISIT) is None
    # Five days after the last run: the next one, expected on 04-16, would be late.
    city.run("2025-04-11")
    task = city.task("P1", TaskKind.HOME_VISIT)
    assert task is not None and task.opened_on == dt.date(2025, 4, 11)


def test_a_review_never_opens_before_the_renewal_window(city: City) -> None:
    assert END - dt.timedelta(days=120) == WINDOW_OPENS
    city.run("2024-11-15")
    # 77 days between runs: the next one, expected on 04-18, would be late, so the review
    # would open now, 121 days before the end; the renewal window opens on 02-01, 120 days
    # before it, and nothing is reviewed before.
    city.run("2025-01-31")
    assert city.task("P1", TaskKind.HOME_VISIT) is None
    city.run("2025-04-30")
    task = city.task("P1", TaskKind.HOME_VISIT)
    assert task is not None and task.opened_on == dt.date(2025, 4, 30)


def _strong_from(city: City, day: str) -> None:
    """Deliver two independent traces of P1 on `day`: strong on it and the 89 nights after."""
    city.deliver(
        "transit",
        f"record_id,card_no,tapped_at,city_code,face_match\nT1,C1,{day} 08:00:00,330700,true\n",
    )
    city.deliver(
        "medical",
        "record_id,id_number,visit_at,institution_code,visit_type\n"
        f"M1,{P1[0]},{day} 09:30:00,H1,outpatient\n",
    )


def _seen_on(city: City, day: str) -> None:
    """Deliver a pharmacy collection of P1's on `day`: seen then, too little to agree alone."""
    city.deliver(
        "medical",
        "record_id,id_number,visit_at,institution_code,visit_type\n"
        f"M2,{P1[0]},{day} 10:00:00,H1,pharmacy\n",
    )


def test_strong_on_a_night_between_runs_certifies_silently(city: City) -> None:
    _strong_from(city, "2024-11-20")
    _seen_on(city, "2024-12-10")  # last seen within last_seen_days (90) of 02-28
    city.run("2025-01-31")
    # Strong, but the certification has 121 days left: not renewed yet.
    assert city.certifications("P1") == []
    # Monthly runs: by 02-28 both traces left the 90-day window and P1 is weak tonight, but
    # P1 was strong on every night from 02-01 (the window opened) to 02-17.
    run_id = city.run("2025-02-28")
    (certification,) = city.certifications("P1")
    assert certification.source == "data_comparison"
    assert certification.run_id == run_id
    assert certification.evidence["strong_on"] == "2025-02-17"
    assert certification.evidence["level"] == "strong"
    assert certification.valid_until == dt.date(2026, 2, 28)
    assert city.task("P1", TaskKind.HOME_VISIT) is None
    assert city.report(run_id)["certified_earlier_night"] == 1


def test_a_person_last_seen_too_long_ago_is_not_certified_for_an_earlier_night(
    city: City,
) -> None:
    # Strong on the nights 02-01 to 02-17 as above, but on 02-28 last seen 100 days before,
    # longer than last_seen_days (90): a sparse life and a death since look alike, and the
    # review goes ahead (when due) instead of a year's certification on traces that old.
    _strong_from(city, "2024-11-20")
    city.run("2025-01-31")
    run_id = city.run("2025-02-28")
    assert city.certifications("P1") == []
    assert city.report(run_id)["certified_earlier_night"] == 0
    city.run("2025-04-12")
    assert city.task("P1", TaskKind.HOME_VISIT) or city.task("P1", TaskKind.FACE_VERIFICATION)


def test_strong_only_before_the_renewal_window_certifies_nothing(city: City) -> None:
    _strong_from(city, "2024-11-01")
    city.run("2025-01-15")
    # Strong on the nights 01-16 to 01-29, all before the window opened on 02-01.
    city.run("2025-04-20")
    assert city.certifications("P1") == []
    # Active earlier in the year (medium by the long window): a face verification.
    assert city.task("P1", TaskKind.FACE_VERIFICATION) is not None


def test_an_open_review_closes_when_an_earlier_night_was_strong(city: City) -> None:
    city.run("2025-04-12")
    task = city.task("P1", TaskKind.HOME_VISIT)
    assert task is not None and task.status == "open"
    # Late deliveries: P1 tapped with a face match and saw a doctor on 01-14, which made P1
    # strong on the nights up to 04-13, one of them after the run of 04-12.
    _strong_from(city, "2025-01-14")
    _seen_on(city, "2025-02-10")
    city.run("2025-04-19")
    (certification,) = city.certifications("P1")
    assert certification.evidence["strong_on"] == "2025-04-13"
    closed = city.task("P1", TaskKind.HOME_VISIT)
    assert closed is not None and closed.status == "closed_by_data"


def test_a_nightly_run_reads_no_earlier_night(city: City) -> None:
    _strong_from(city, "2025-01-20")
    city.run("2025-01-31")
    city.run("2025-02-01")
    # Strong on 02-01 itself, the window's first night: certified tonight, not for an
    # earlier night.
    (certification,) = city.certifications("P1")
    assert "strong_on" not in certification.evidence
    city.run("2025-02-02")
    assert len(city.certifications("P1")) == 1
