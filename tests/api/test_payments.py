"""A person's file carries each benefit's payment state and history, read under audit."""

from __future__ import annotations

from sqlalchemy import select

from liveness.db import session_scope
from models import AuditEntry
from tests.api.conftest import World
from tests.api.payments import approve, every_value, suspend_amend_hold


def test_the_payment_state_and_history_of_a_benefit(world: World) -> None:
    story = suspend_amend_hold(world.services, person_ref="P1", run_id=world.run_id)
    answer = world.client.get("/api/v1/persons/P1", headers=world.auth("auditor"))
    assert answer.status_code == 200, answer.json()
    (payment,) = answer.json()["payments"]
    assert {k: v for k, v in payment.items() if k != "history"} == {
        "benefit_id": story.benefit_id, "benefit_type": "enterprise_pension",
        "monthly_amount": "3000.00", "status": "suspended", "roll_status": "active",
        "suspension_reason": "deceased", "suspended_from": "2025-06-16",
        "suspended_as_of": "2025-05-30", "amended_from": "lapsed",
        "held": {
            "entry_id": story.held_id, "seq": story.held_seq, "action": "reinstate",
            "reason": "proof_of_life", "amount": "12000.00", "effective_on": "2025-10-01",
            "caused_by": "grid_worker",
        },
    }  # fmt: skip
    history = payment["history"]
    assert [
        (e["run_as_of"], e["action"], e["reason"], e["event"], e["status"], e["standing"])
        for e in history
    ] == [
        ("2025-05-30", "suspend", "lapsed", "lapse", "published", "published"),
        ("2025-06-30", "amend", "deceased", "death", "published", "published"),
        ("2025-09-30", "reinstate", "proof_of_life", "proof_of_life", "held",
         "awaiting_approval"),
    ]  # fmt: skip
    assert [e["seq"] for e in history] == sorted(e["seq"] for e in history)
    assert history[1]["detail"] == {
        "source": "cremation", "record_id": "HZ-2025-0042", "died_on": "2025-06-15",
        "months_overpaid": 0,
    }  # fmt: skip

    approve(world.services, story, operator="operator-2")
    (payment,) = world.client.get("/api/v1/persons/P1", headers=world.auth("operator")).json()[
        "payments"
    ]
    assert (payment["status"], payment["held"], payment["amended_from"]) == ("active", None, None)
    held, approval = payment["history"][2:]
    assert (held["standing"], held["approved_by"]) == ("approved", "operator-2")
    assert (approval["event"], approval["standing"], approval["approved_by"]) == (
        "approval", "published", "operator-2",
    )  # fmt: skip
    assert approval["detail"] == {"approves_seq": story.held_seq}
    with session_scope(world.services.sessions) as session:
        reads = session.execute(
            select(AuditEntry.actor, AuditEntry.target_ref).where(
                AuditEntry.action == "persons.read"
            )
        ).all()
    assert sorted(reads) == [("auditor", "P1"), ("operator", "P1")]


def test_a_benefit_without_history_and_evidence_numbers_masked(sqlite_world: World) -> None:
    world = sqlite_world
    (payment,) = world.client.get("/api/v1/persons/P3", headers=world.auth("grid_worker")).json()[
        "payments"
    ]
    assert (payment["status"], payment["history"], payment["held"]) == ("active", [], None)
    every_value(world.services, person_ref="P2", run_id=world.run_id)
    payments = world.client.get("/api/v1/persons/P2", headers=world.auth("operator")).json()[
        "payments"
    ]
    assert len(payments) == 6
    cited = [e["detail"]["new_id_number"] for p in payments for e in p["history"]]
    assert cited and set(cited) == {"110101********0015"}
    # A suspension amended by a death names the reason it amended.
    injury = next(p for p in payments if p["benefit_type"] == "work_injury_long_term")
    assert (injury["suspension_reason"], injury["amended_from"]) == ("deceased", "lapsed")
    refused = world.client.get("/api/v1/persons/P4", headers=world.auth("grid_worker"))
    assert refused.status_code == 404  # another grid's person: answered as absent
