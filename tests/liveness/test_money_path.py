"""Regressions of the money path: each finding of issues 13 and 20, on both backends.

The three-person roll of `test_workflow`: P1 3000.00 and P2 2500.50 a month (enterprise
pensions certified until 2025-06-01, renewal window from 04-02), P3 300.00 (resident pension,
never certified). Payments are made on the 1st of each month, in advance. Nobody leaves a
trace unless a test delivers one, so everyone is weak and due for a home visit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.web.i18n import catalogue
from liveness.access.gateways import NoticeDayInvalid
from liveness.certification.runner import execute_run
from liveness.db import session_scope
from liveness.errors import RunRefused
from liveness.lists import ApprovalRefused, approve_entry, reject_entry
from liveness.review.outcomes import OutcomeInvalid, correct_outcome
from liveness.services import Services
from models import (
    Benefit,
    DeathRecord,
    IntegrityLead,
    ListEntry,
    Notice,
    NoticeStatus,
    Person,
    ReviewTask,
    Run,
    TaskKind,
)
from tests.liveness.ingest.test_ingest import REGISTRY
from tests.liveness.test_workflow import P1, P2, City, hold_back_pay

P3 = ("330702195503031213", "王五")  # 300.00 a month, resident pension, never certified

P4_NUMBER = "330702194501011257"  # the second number P1 drew under since 2020

ROLL_HEADER = REGISTRY.splitlines()[0] + "\n"
DEREGISTRATION = "record_id,id_number,name,deregistered_on,reason,new_id_number\n"
VOIDABLE_DEREGISTRATION = DEREGISTRATION.replace("\n", ",correction,voided\n")


def p4_draws(
    benefit: str = "enterprise_pension", amount: str = "3000.00", since: str = "2024-07-01",
    certified: str = "2024-06-01",
) -> str:  # fmt: skip
    """Return a roll row of P4: P1 again under a second number, drawing a benefit since a day."""
    return (
        f"P4,{P4_NUMBER},张三,M,1945-01-01,{benefit},{amount},{since},330702,G1,active,"
        f"{certified}\n"
    )


def terminate_p1(city: City, first_run: str = "2025-01-31") -> None:
    """Suspend P1 on a death record of 01-10 that stands until the benefit ends in July."""
    city.cremation(f"R1,{P1[0]},{P1[1]},男,1945-01-01,2025-01-10,2025-01-12\n")
    city.run(first_run)
    city.run("2025-07-31")
    assert [e.action for e in city.entries("P1")] == ["suspend", "terminate"]


@pytest.fixture(params=["sqlite", "postgresql"])
def city(
    request: pytest.FixtureRequest, services_factory: Callable[[str], Services], tmp_path: Path
) -> Iterator[City]:
    place = City.on_roll(services_factory(request.param), tmp_path)
    yield place
    # Whatever evidence an entry cites, the person page says it in words.
    with session_scope(place.services.sessions) as session:
        details = session.scalars(select(ListEntry.detail)).all()
    cited = {key for detail in details for key in detail}
    assert not {key for key in cited if f"evidence_{key}" not in catalogue()}


def test_a_death_found_by_a_visit_holds_and_ends_the_benefit(city: City) -> None:
    city.run("2025-04-30")
    city.outcome("P2", TaskKind.HOME_VISIT, "deceased", "2025-05-05", died_on=dt.date(2025, 4, 20))
    city.run("2025-05-31")
    (suspension,) = city.entries("P2")
    assert (suspension.action, suspension.reason, suspension.event) == (
        "suspend", "deceased", "death",
    )  # fmt: skip
    assert suspension.effective_on == dt.date(2025, 4, 21)
    assert suspension.amount == Decimal("2500.50")  # May, paid on 05-01 after an April death
    assert suspension.caused_by == "worker-1"
    assert suspension.detail["source"] == "review"
    # Found: the next run reinstated it as "death_record_voided" though nothing was voided.
    for day in ("2025-06-30", "2025-09-30"):
        city.run(day)
    assert len(city.entries("P2")) == 1
    assert city.benefit("P2").status == "suspended"
    # 180 days after the suspending run (05-31) nobody contested it: the benefit ends.
    city.run("2025-11-30")
    _, termination = city.entries("P2")
    assert (termination.action, termination.event) == ("terminate", "death_stood")
    assert city.benefit("P2").status == "terminated"


def test_a_supervisor_correcting_a_visits_death_withdraws_it(city: City) -> None:
    city.run("2025-04-30")
    task_id = city.outcome(
        "P2", TaskKind.HOME_VISIT, "deceased", "2025-05-05", died_on=dt.date(2025, 4, 20)
    )
    city.run("2025-05-31")
    with session_scope(city.services.sessions) as session:
        with pytest.raises(OutcomeInvalid, match="someone else"):
            correct_outcome(session, task_id=task_id, outcome="not_found", actor="worker-1",
                            on=dt.date(2025, 6, 3), note="wrong door")  # fmt: skip
        with pytest.raises(OutcomeInvalid, match="note"):
            correct_outcome(session, task_id=task_id, outcome="not_found", actor="lead-1",
                            on=dt.date(2025, 6, 3), note=" ")  # fmt: skip
        correct_outcome(session, task_id=task_id, outcome="not_found", actor="lead-1",
                        on=dt.date(2025, 6, 3), note="the neighbour's house")  # fmt: skip
    city.run("2025-06-30")
    _, reinstatement = city.entries("P2")
    assert (reinstatement.action, reinstatement.reason, reinstatement.event) == (
        "reinstate", "death_withdrawn", "death_withdrawn",
    )  # fmt: skip
    assert reinstatement.amount == Decimal("2500.50")  # June, withheld after the 05-31 run
    with session_scope(city.services.sessions) as session:
        record = session.scalars(select(DeathRecord).where(DeathRecord.source == "review")).one()
        task = session.get_one(ReviewTask, task_id)
    assert (record.status, record.settled_by) == ("voided", "lead-1")
    assert task.outcome_detail["corrections"][0]["from"] == "deceased"
    # A visit that found nobody leads to a remote face verification, not to a lapse.
    face = city.task("P2", TaskKind.FACE_VERIFICATION)
    assert face is not None and face.cause == "after_visit"


def test_runs_move_forward(city: City) -> None:
    with pytest.raises(RunRefused, match="after today"):
        execute_run(city.services, as_of=dt.date(2999, 1, 1))
    city.run("2025-04-30")
    with pytest.raises(RunRefused, match="before the latest published run"):
        execute_run(city.services, as_of=dt.date(2025, 3, 31))
    with session_scope(city.services.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Run)) == 1
    city.outcome("P2", TaskKind.HOME_VISIT, "deceased", "2025-05-05", died_on=dt.date(2025, 4, 20))
    city.run("2025-05-31")
    # Rerunning the latest date adds nothing to the list.
    city.run("2025-05-31")
    assert len(city.entries("P2")) == 1


def test_a_lapse_suspends_only_after_a_sent_notice_and_a_failed_review(city: City) -> None:
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "refused", "2025-05-05")
    city.outcome("P2", TaskKind.HOME_VISIT, "refused", "2025-05-05")
    for day in ("2025-05-31", "2025-06-15"):
        city.run(day)  # 06-15: both lapsed; lapse notices are queued
    # A notice is not sent before its run wrote it (06-15): that would cut its period short.
    with pytest.raises(NoticeDayInvalid, match="was written on 2025-06-15"):
        city.send_notices(on=dt.date(2025, 6, 1), ref="P1", template="lapse")
    # Only P1's notice goes out; P2's never does (no phone reached, no letter recorded).
    assert city.send_notices(on=dt.date(2025, 6, 16), ref="P1", template="lapse") == 1
    city.run("2025-07-15")  # the notice period (30 days) is not over yet
    assert city.entries("P1") == []
    run_id = city.run("2025-07-31")
    (lapse,) = city.entries("P1")
    assert (lapse.action, lapse.reason, lapse.event) == ("suspend", "lapsed", "lapse")
    assert lapse.effective_on == dt.date(2025, 8, 1) and lapse.amount == Decimal("0.00")
    assert lapse.detail["notice_sent_on"] == "2025-06-16"
    assert lapse.detail["review_outcome"] == "refused"
    assert city.entries("P2") == []
    assert city.report(run_id)["lapse_waiting"]["notice_unsent"] == 1
    # A letter handed over by staff is a notice too.
    city.send_notices(on=dt.date(2025, 8, 2), ref="P2", template="lapse", channel="letter")
    city.run("2025-09-05")
    (lapse,) = city.entries("P2")
    assert lapse.effective_on == dt.date(2025, 10, 1)


def test_a_notice_period_runs_from_the_notice_even_if_stored_as_sent_before_it(
    city: City,
) -> None:
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "refused", "2025-05-05")
    for day in ("2025-05-31", "2025-06-15"):
        city.run(day)  # 06-15: lapsed; the lapse notice is written
    # A send day before the notice, stored by an older version or by hand: the period still
    # runs from 06-15, so nobody is suspended before 07-15.
    with session_scope(city.services.sessions) as session:
        (notice,) = session.scalars(
            select(Notice).join(Person).where(Person.person_ref == "P1",
                                              Notice.template == "lapse")
        )  # fmt: skip
        notice.status = NoticeStatus.SENT
        notice.sent_at = dt.datetime(2025, 5, 1, 2, tzinfo=dt.UTC)
    city.run("2025-07-14")
    assert city.entries("P1") == []
    city.run("2025-07-15")
    (lapse,) = city.entries("P1")
    assert (lapse.reason, lapse.detail["notice_sent_on"]) == ("lapsed", "2025-06-15")


def test_a_visit_finding_nobody_leads_to_a_face_verification_first(city: City) -> None:
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "not_found", "2025-05-05")
    city.outcome("P2", TaskKind.HOME_VISIT, "not_found", "2025-05-05")
    city.run("2025-05-31")
    for ref in ("P1", "P2"):
        face = city.task(ref, TaskKind.FACE_VERIFICATION)
        assert face is not None and face.cause == "after_visit" and face.status == "open"
    # P1 is told of the verification; P2's notice never goes out.
    city.send_notices(on=dt.date(2025, 6, 1), ref="P1", template="face")
    city.run("2025-06-30")  # both ignored it past its due date (06-15); lapse notices queued
    assert city.task("P1", TaskKind.FACE_VERIFICATION).outcome == "lapsed"  # type: ignore[union-attr]
    # After that last chance, no further visit: the chain of reviews has ended.
    assert city.task("P1", TaskKind.HOME_VISIT).status == "done"  # type: ignore[union-attr]
    city.send_notices(on=dt.date(2025, 7, 1), template="lapse")
    city.run("2025-07-31")
    (lapse,) = city.entries("P1")
    assert lapse.reason == "lapsed" and lapse.detail["review_outcome"] == "lapsed"
    # P2 was never told of the face verification: ignoring it is no failed review.
    assert city.entries("P2") == []


def test_a_death_review_settles_its_record_for_good(city: City) -> None:
    # A cremation record carries P2's number but another name: a review, not a suspension.
    city.cremation(f"R1,{P2[0]},赵六,女,1950-02-02,2025-03-20,2025-03-22\n")
    city.run("2025-03-31")
    review = city.task("P2", TaskKind.DEATH_REVIEW)
    assert review is not None and review.status == "open"
    city.outcome("P2", TaskKind.DEATH_REVIEW, "not_a_death", "2025-04-03")
    # Found: every later run opened a new review of the same record, at the top priority.
    for day in ("2025-04-30", "2025-05-31", "2025-06-30"):
        city.run(day)
    with session_scope(city.services.sessions) as session:
        reviews = session.scalar(
            select(func.count())
            .select_from(ReviewTask)
            .where(ReviewTask.kind == TaskKind.DEATH_REVIEW)
        )
        record = session.scalars(select(DeathRecord)).one()
    assert reviews == 1
    assert (record.status, record.settlement, record.settled_by) == (
        "refuted", "not_a_death", "worker-1",
    )  # fmt: skip
    assert city.entries("P2") == []


def test_a_death_review_finding_the_person_dead_suspends_them(city: City) -> None:
    city.cremation(f"R1,{P2[0]},赵六,女,1950-02-02,2025-03-20,2025-03-22\n")
    city.run("2025-03-31")
    city.outcome(
        "P2", TaskKind.DEATH_REVIEW, "deceased", "2025-04-03", died_on=dt.date(2025, 3, 20)
    )
    city.run("2025-04-30")
    (suspension,) = city.entries("P2")
    assert (suspension.reason, suspension.effective_on) == ("deceased", dt.date(2025, 3, 21))
    assert suspension.amount == Decimal("2500.50")  # April
    for day in ("2025-05-31", "2025-06-30"):
        city.run(day)
    assert len(city.entries("P2")) == 1
    with session_scope(city.services.sessions) as session:
        reviews = session.scalar(
            select(func.count())
            .select_from(ReviewTask)
            .where(ReviewTask.kind == TaskKind.DEATH_REVIEW)
        )
    assert reviews == 1


def test_a_death_after_a_lapse_suspension_is_listed_with_its_overpayment(city: City) -> None:
    city.run("2025-04-30")
    city.outcome("P1", TaskKind.HOME_VISIT, "refused", "2025-05-05")
    for day in ("2025-05-31", "2025-06-15"):
        city.run(day)
    city.send_notices(on=dt.date(2025, 6, 16), ref="P1", template="lapse")
    city.run("2025-07-31")
    (lapse,) = city.entries("P1")
    assert lapse.effective_on == dt.date(2025, 8, 1)
    # P1 had died on 06-20; the record arrives in August.
    city.cremation(f"R9,{P1[0]},{P1[1]},男,1945-01-01,2025-06-20,2025-08-10\n")
    city.run("2025-08-31")
    lapse, amendment = city.entries("P1")
    assert (amendment.action, amendment.reason, amendment.event) == ("amend", "deceased", "death")
    assert amendment.effective_on == dt.date(2025, 6, 21)
    # July was paid (on 07-01, before the lapse withheld payments after the 07-31 run).
    assert amendment.amount == Decimal("3000.00")
    assert amendment.detail["amends"] == "lapsed"
    benefit = city.benefit("P1")
    assert (benefit.status, benefit.suspension_reason) == ("suspended", "deceased")


def test_a_duplicate_identity_suspends_the_later_benefit_with_its_overpayment(
    city: City,
) -> None:
    # P4 is P1 again under a second number, drawing the same pension since 2020-01-01.
    city.deliver("registry", ROLL_HEADER + p4_draws(since="2020-01-01"))
    city.run("2025-02-28")
    city.deliver(
        "deregistration", DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-03-10,duplicate,{P1[0]}\n"
    )
    city.run("2025-03-31")
    assert city.entries("P1") == []
    (suspension,) = city.entries("P4")
    assert (suspension.action, suspension.reason, suspension.event) == (
        "suspend", "duplicate_identity", "duplicate_identity",
    )  # fmt: skip
    assert suspension.effective_on == dt.date(2025, 4, 1)
    # Every payment since its first: January 2020 to March 2025, 63 months.
    assert suspension.amount == Decimal("189000.00")
    with session_scope(city.services.sessions) as session:
        (lead,) = session.scalars(select(IntegrityLead)).all()
    assert (lead.rule, lead.key, lead.status) == ("deregistered_number", "D1", "open")
    city.run("2025-04-30")
    assert len(city.entries("P4")) == 1


def test_a_redelivered_roll_does_not_reset_a_suspension(city: City) -> None:
    city.cremation(f"R1,{P2[0]},{P2[1]},女,1950-02-02,2025-01-20,2025-01-22\n")
    city.run("2025-01-31")
    # The agency's roll still says active: its word is kept apart from the payment status.
    city.deliver("registry", REGISTRY.replace("3000.00", "3100.00"))
    city.run("2025-02-28")
    assert len(city.entries("P2")) == 1
    benefit = city.benefit("P2")
    assert (benefit.status, benefit.roll_status) == ("suspended", "active")


def test_a_proof_of_life_before_the_death_does_not_undo_it(city: City) -> None:
    city.face(f"V1,{P1[0]},2025-01-05 10:00:00,pass,app\n")
    city.cremation(f"R1,{P1[0]},{P1[1]},男,1945-01-01,2025-01-10,2025-01-12\n")
    city.run("2025-01-31")
    city.run("2025-02-28")
    (suspension,) = city.entries("P1")
    assert suspension.reason == "deceased"
    with session_scope(city.services.sessions) as session:
        assert session.scalars(select(DeathRecord)).one().status == "active"


def test_a_held_reinstatement_is_superseded_by_a_later_death(city: City) -> None:
    held = hold_back_pay(city)
    assert city.benefit("P1").status == "suspended"
    # Before a second operator looks at it, the person dies after all.
    city.cremation(f"R2,{P1[0]},{P1[1]},男,1945-01-01,2025-07-02,2025-07-05\n")
    city.run("2025-07-31")
    amendment = city.entries("P1")[-1]
    assert (amendment.action, amendment.reason) == ("amend", "deceased")
    assert amendment.detail["supersedes_held_reinstatement"] is True
    assert amendment.amount == Decimal("0.00")  # nothing was paid since January
    with (
        session_scope(city.services.sessions) as session,
        pytest.raises(ApprovalRefused, match="superseded"),
    ):
        approve_entry(session, entry_id=held.id, operator="operator-2")
    assert city.benefit("P1").status == "suspended"


def test_every_list_entry_names_its_event(city: City) -> None:
    city.cremation(f"R1,{P2[0]},{P2[1]},女,1950-02-02,2025-01-20,2025-01-22\n")
    city.run("2025-01-31")
    with session_scope(city.services.sessions) as session:
        events = session.scalars(select(ListEntry.event)).all()
    assert events and all(event is not None for event in events)


# Found by the stateful test (tests/liveness/test_money_path_stateful.py), shortest histories.


def test_a_death_withdrawn_from_a_duplicate_suspension_amends_it_back(city: City) -> None:
    city.deliver("registry", ROLL_HEADER + p4_draws(since="2022-01-01", certified=""))
    city.deliver(
        "deregistration", DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-01-10,duplicate,{P1[0]}\n"
    )
    city.run("2025-01-20")
    (duplicate,) = city.entries("P4")
    assert duplicate.amount == Decimal("111000.00")  # 2022-01 to 2025-01: 37 months
    task_id = city.outcome(
        "P4", TaskKind.HOME_VISIT, "deceased", "2025-01-21", died_on=dt.date(2025, 1, 5)
    )
    city.run("2025-01-21")
    amendment = city.entries("P4")[-1]
    assert (amendment.action, amendment.reason) == ("amend", "deceased")
    assert amendment.amount == Decimal("0.00")  # the duplicate's recovery claims it all
    with session_scope(city.services.sessions) as session:
        correct_outcome(session, task_id=task_id, outcome="not_found", actor="lead-1",
                        on=dt.date(2025, 1, 22), note="recorded in error")  # fmt: skip
    city.run("2025-01-22")  # found: KeyError 'deregistration', and every later run failed
    back = city.entries("P4")[-1]
    assert (back.action, back.reason, back.event) == ("amend", "duplicate_identity",
                                                      "death_withdrawn")  # fmt: skip
    assert city.benefit("P4").suspension_reason == "duplicate_identity"


def test_a_held_reinstatement_of_a_terminated_benefit_can_be_approved(city: City) -> None:
    terminate_p1(city, first_run="2025-01-20")
    city.cremation(
        "R1,110101195001011230,王某,男,1945-01-01,2025-01-10,2025-01-12,true\n", correction=True
    )
    city.run("2025-08-01")
    held = city.entries("P1")[-1]
    assert (held.action, held.status, held.amount) == ("reinstate", "held", Decimal("21000.00"))
    city.run("2025-08-02")  # found: the same reinstatement held again at every run
    assert city.entries("P1")[-1].id == held.id
    with session_scope(city.services.sessions) as session:
        approval = approve_entry(session, entry_id=held.id, operator="operator-2")
    assert approval.status == "published"
    assert city.benefit("P1").status == "active"


def test_a_death_amending_a_prison_suspension_terminates_from_the_death(city: City) -> None:
    city.run("2025-01-20")  # P3 was never certified: a visit at once
    city.outcome("P3", TaskKind.HOME_VISIT, "imprisoned", "2025-01-21")
    city.run("2025-01-22")
    city.cremation(f"R1,{P3[0]},{P3[1]},男,1955-03-03,2025-08-10,2025-08-12\n")
    city.run("2025-08-20")
    city.run("2025-08-20")  # found: a rerun terminated it, counting from the prison suspension
    assert [e.action for e in city.entries("P3")] == ["suspend", "amend"]
    city.run("2026-02-15")  # 179 days after the run that found the death
    assert len(city.entries("P3")) == 2
    city.run("2026-02-16")
    assert city.entries("P3")[-1].action == "terminate"


def test_a_face_pass_arriving_before_a_death_record_dated_earlier_refutes_it(
    city: City,
) -> None:
    city.face(f"V1,{P1[0]},2025-01-25 10:00:00,pass,app\n")
    city.run("2025-01-25")
    city.cremation(f"R1,{P1[0]},{P1[1]},男,1945-01-01,2025-01-10,2025-01-26\n")
    city.run("2025-01-27")  # found: suspended, then reinstated by a rerun of the same day
    city.run("2025-01-27")
    assert city.entries("P1") == []
    with session_scope(city.services.sessions) as session:
        assert session.scalars(select(DeathRecord)).one().status == "refuted"


def test_a_number_cancelled_as_a_duplicate_stops_drawing(city: City) -> None:
    city.deliver("registry", ROLL_HEADER + p4_draws())
    city.deliver(
        "deregistration",
        "record_id,id_number,name,deregistered_on,reason\n"
        f"D1,{P4_NUMBER},张三,2025-03-10,duplicate\n",
    )
    city.run("2025-03-31")
    (suspension,) = city.entries("P4")
    assert suspension.reason == "duplicate_identity"
    assert suspension.amount == Decimal("27000.00")  # July 2024 to March 2025: 9 months


def test_a_number_cancelled_in_favour_of_one_on_the_roll_stops_only_what_is_drawn_twice(
    city: City,
) -> None:
    # P4 is P1 again, drawing P1's pension from 2024-07 and a survivor pension P1 does not draw.
    city.deliver(
        "registry",
        ROLL_HEADER
        + p4_draws()
        + p4_draws(benefit="survivor_pension", amount="500.00", since="2019-01-01"),
    )
    # The police cancel P4's number as the duplicate and name P1's as the one kept.
    city.deliver(
        "deregistration", DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-03-10,duplicate,{P1[0]}\n"
    )
    city.run("2025-03-31")
    assert city.entries("P1") == []
    (suspension,) = city.entries("P4")
    assert suspension.detail["other_benefit"] == city.benefit("P1").id
    assert suspension.amount == Decimal("27000.00")  # July 2024 to March 2025: 9 months
    # Found by the stateful test: the survivor pension is drawn once, and keeps being paid.
    with session_scope(city.services.sessions) as session:
        statuses = dict(
            session.execute(
                select(Benefit.benefit_type, Benefit.status)
                .join(Person, Person.id == Benefit.person_id)
                .where(Person.id_number == P4_NUMBER)
            ).all()
        )
    assert statuses == {"enterprise_pension": "suspended", "survivor_pension": "active"}


def test_a_held_reinstatement_of_a_terminated_benefit_is_superseded_by_a_later_death(
    city: City,
) -> None:
    terminate_p1(city)
    city.cremation(
        f"R1,{P1[0]},{P1[1]},男,1945-01-01,2025-01-10,2025-01-12,true,true\n", voided=True
    )
    city.run("2025-08-31")
    held = city.entries("P1")[-1]
    assert (held.action, held.status) == ("reinstate", "held")
    # Before a second operator looks at it, another department records the death again.
    city.cremation(f"R2,{P1[0]},{P1[1]},男,1945-01-01,2025-09-02,2025-09-05\n")
    city.run("2025-09-30")
    with (
        session_scope(city.services.sessions) as session,
        pytest.raises(ApprovalRefused, match=r"superseded|not waiting"),
    ):
        approve_entry(session, entry_id=held.id, operator="operator-2")
    assert city.benefit("P1").status == "terminated"


def test_a_duplicate_voided_under_a_death_is_not_restored_when_the_death_goes(
    city: City,
) -> None:
    city.deliver("registry", ROLL_HEADER + p4_draws())
    city.deliver(
        "deregistration", VOIDABLE_DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-03-10,duplicate,,,\n"
    )
    city.run("2025-03-31")
    # In one run: the police void the duplicate, and a wrong cremation record names P4.
    city.deliver(
        "deregistration",
        VOIDABLE_DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-03-10,duplicate,,true,true\n",
    )
    city.cremation(f"R1,{P4_NUMBER},张三,男,1945-01-01,2025-04-10,2025-04-12,,\n", voided=True)
    city.run("2025-04-30")
    assert city.entries("P4")[-1].reason == "deceased"
    city.cremation(
        f"R1,{P4_NUMBER},张三,男,1945-01-01,2025-04-10,2025-04-12,true,true\n", voided=True
    )
    city.run("2025-05-31")
    # Found by the stateful test: the death withdrawn returned P4 to the voided duplicate.
    last = city.entries("P4")[-1]
    assert (last.action, last.reason) == ("reinstate", "death_withdrawn")
    assert last.amount == Decimal("6000.00")  # April and May, withheld since the March run
    assert city.benefit("P4").status == "active"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_roll_whose_every_benefit_ended_still_runs(
    backend: str, services_factory: Callable[[str], Services], tmp_path: Path
) -> None:
    place = City(services_factory(backend), tmp_path)
    place.deliver("registry", "\n".join(REGISTRY.splitlines()[:2]) + "\n")
    terminate_p1(place)
    # Found: with nobody left drawing, every run failed as if no roll had been delivered.
    place.cremation(
        "R1,110101195001011230,王某,男,1945-01-01,2025-01-10,2025-01-12,true\n", correction=True
    )
    place.run("2025-08-01")  # nobody draws: the run grades nobody, and reinstates P1
    assert [e.action for e in place.entries("P1")] == ["suspend", "terminate", "reinstate"]
    place.run("2025-08-31")


def test_a_death_record_voided_by_its_department_reinstates(city: City) -> None:
    city.cremation(f"R1,{P2[0]},{P2[1]},女,1950-02-02,2025-01-20,2025-01-22\n")
    city.run("2025-01-31")
    city.cremation(
        f"R1,{P2[0]},{P2[1]},女,1950-02-02,2025-01-20,2025-01-22,true,true\n", voided=True
    )
    city.run("2025-02-28")
    _, reinstatement = city.entries("P2")
    assert (reinstatement.action, reinstatement.reason, reinstatement.event) == (
        "reinstate", "death_withdrawn", "death_withdrawn",
    )  # fmt: skip
    assert reinstatement.amount == Decimal("2500.50")  # the payment of 02-01
    with session_scope(city.services.sessions) as session:
        assert session.scalars(select(DeathRecord)).one().status == "voided"


def test_a_voided_duplicate_deregistration_reinstates_with_back_pay(city: City) -> None:
    city.deliver("registry", ROLL_HEADER + p4_draws())
    city.deliver(
        "deregistration", VOIDABLE_DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-03-10,duplicate,,,\n"
    )
    city.run("2025-03-31")
    (suspension,) = city.entries("P4")
    assert suspension.reason == "duplicate_identity"
    city.deliver(
        "deregistration",
        VOIDABLE_DEREGISTRATION + f"D1,{P4_NUMBER},张三,2025-03-10,duplicate,,true,true\n",
    )
    city.run("2025-05-31")
    _, reinstatement = city.entries("P4")
    assert (reinstatement.action, reinstatement.reason) == ("reinstate", "duplicate_withdrawn")
    assert reinstatement.amount == Decimal("6000.00")  # April and May, withheld


def test_a_rejected_reinstatement_leaves_the_suspension_standing(city: City) -> None:
    held = hold_back_pay(city)
    with session_scope(city.services.sessions) as session:
        with pytest.raises(ApprovalRefused, match="may not decide"):
            reject_entry(session, entry_id=held.id, operator=held.caused_by, reason="mine")
        reject_entry(session, entry_id=held.id, operator="operator-2", reason="face looks wrong")
    benefit = city.benefit("P1")
    assert (benefit.status, benefit.suspension_reason, benefit.held_entry_id) == (
        "suspended", "deceased", None,
    )  # fmt: skip
    with session_scope(city.services.sessions) as session, pytest.raises(ApprovalRefused):
        approve_entry(session, entry_id=held.id, operator="operator-3")
    # The next run finds the same proof of life: it does not reinstate again.
    city.run("2025-07-31")
    assert [e.id for e in city.entries("P1")][-1] == held.id
    assert city.benefit("P1").held_entry_id is None
    # A later proof of life makes a new reinstatement, for a second operator to decide.
    city.face(f"V2,{P1[0]},2025-08-10 10:00:00,pass,kiosk\n")
    city.run("2025-08-31")
    again = city.entries("P1")[-1]
    assert (again.action, again.status) == ("reinstate", "held") and again.id != held.id
    assert city.benefit("P1").held_entry_id == again.id


def _back_pay(monthly: str, *, after: dt.date, until: dt.date) -> Decimal:
    """Return the monthly amount times the payment days (the 1st) in (after, until]."""
    days = [
        dt.date(year, month, 1) for year in range(after.year, until.year + 1)
        for month in range(1, 13) if after < dt.date(year, month, 1) <= until
    ]  # fmt: skip
    return Decimal(monthly) * len(days)


def test_a_face_pass_after_the_death_reinstates_a_terminated_benefit(city: City) -> None:
    terminate_p1(city)  # a wrong record of a death on 01-10, suspended 01-31, ended 07-31
    # P1 verifies their face on the app, unasked, long after the recorded death.
    city.face(f"V1,{P1[0]},2025-08-20 10:00:00,pass,app\n")
    city.run("2025-08-31")  # found: P1 was off the roll, so the proof was dropped for good
    reinstatement = city.entries("P1")[-1]
    assert (reinstatement.action, reinstatement.reason, reinstatement.event) == (
        "reinstate", "proof_of_life", "proof_of_life",
    )  # fmt: skip
    assert reinstatement.effective_on == dt.date(2025, 9, 1)
    # Withheld since the 01-31 run that suspended it: February to August.
    expected = _back_pay("3000.00", after=dt.date(2025, 1, 31), until=dt.date(2025, 8, 31))
    assert expected == Decimal("21000.00")
    assert reinstatement.amount == expected
    assert reinstatement.status == "held"  # above the four-eyes threshold
    assert reinstatement.detail["proof_day"] == "2025-08-20"
    with session_scope(city.services.sessions) as session:
        assert session.scalars(select(DeathRecord)).one().status == "refuted"
        approve_entry(session, entry_id=reinstatement.id, operator="operator-2")
    assert city.benefit("P1").status == "active"
    city.run("2025-09-30")  # back on the roll: nothing more to say about P1
    assert city.entries("P1")[-1].action == "reinstate"


def test_a_later_face_pass_reinstates_a_terminated_benefit_after_a_rejection(
    city: City,
) -> None:
    terminate_p1(city)
    city.face(f"V1,{P1[0]},2025-08-20 10:00:00,pass,app\n")
    city.run("2025-08-31")
    held = city.entries("P1")[-1]
    with session_scope(city.services.sessions) as session:
        reject_entry(session, entry_id=held.id, operator="operator-2", reason="face looks wrong")
    assert city.benefit("P1").status == "terminated"
    city.run("2025-09-15")  # the same proof again reinstates nothing
    assert city.entries("P1")[-1].id == held.id
    # A later proof of life makes a new reinstatement, though no death record names P1 now.
    city.face(f"V2,{P1[0]},2025-09-20 10:00:00,pass,kiosk\n")
    city.run("2025-09-30")
    again = city.entries("P1")[-1]
    assert (again.action, again.reason, again.status) == ("reinstate", "proof_of_life", "held")
    assert again.id != held.id
    assert again.amount == _back_pay(
        "3000.00", after=dt.date(2025, 1, 31), until=dt.date(2025, 9, 30)
    )


def p1_strong_traces(first: dt.date, last: dt.date) -> tuple[str, str]:
    """Return transit and medical deliveries that make P1 strong by data on days first..last.

    Face-matched taps of P1's card every 4 days and an outpatient visit every 20, beside the
    city's background of unlinked taps that keeps transit judged healthy.
    """
    transit, medical = (
        ["record_id,card_no,tapped_at,city_code,face_match\n"],
        ["record_id,id_number,name,visit_at,institution_code,visit_type,discharge_outcome\n"],
    )
    for n in range((last - first).days + 1):
        day = first + dt.timedelta(days=n)
        transit += [f"bg-{day:%Y%m%d}-{k},BG{k},{day} 07:{k:02d}:00,330700,\n" for k in range(60)]
        if n % 4 == 0:
            transit.append(f"p1-{day:%Y%m%d},C2,{day} 08:15:00,330700,true\n")
        if n % 20 == 0:
            medical.append(f"m1-{day:%Y%m%d},{P1[0]},{P1[1]},{day} 09:00:00,H001,outpatient,\n")
    return "".join(transit), "".join(medical)


@pytest.mark.parametrize("outcome", ["moved_away", "not_found"])
def test_a_visit_finding_nobody_asks_no_face_verification_of_a_person_the_data_certifies(
    city: City, outcome: str
) -> None:
    # Found by the money-path state machine: the first run after the outcome opened a face
    # verification for a person strong by data, and a rerun of the same date closed it by data.
    city.run("2025-04-30")
    fields = {"region": "330100"} if outcome == "moved_away" else {}
    city.outcome("P1", TaskKind.HOME_VISIT, outcome, "2025-05-05", **fields)
    transit, medical = p1_strong_traces(dt.date(2025, 4, 1), dt.date(2025, 5, 30))
    city.deliver("transit", transit)
    city.deliver("medical", medical)
    city.run("2025-05-31")
    assert city.task("P1", TaskKind.FACE_VERIFICATION) is None
    assert city.certifications("P1")[-1].certified_on == dt.date(2025, 5, 31)
    with session_scope(city.services.sessions) as session:
        tasks_before = session.scalar(select(func.count()).select_from(ReviewTask))
    city.run("2025-05-31")
    with session_scope(city.services.sessions) as session:
        assert session.scalar(select(func.count()).select_from(ReviewTask)) == tasks_before
    assert city.task("P1", TaskKind.FACE_VERIFICATION) is None
