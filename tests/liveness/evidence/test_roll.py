"""The kept roll: the last run's roll plus the persons changed since equals a full read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from liveness.db import make_engine
from liveness.evidence import roll as roll_module
from liveness.evidence.roll import ROLL_FORMAT, kept_roll, read_roll, roll_frame
from liveness.migrate import upgrade
from models import Benefit, BenefitStatus, Person, RollCache, RollChange
from tests.liveness.evidence.test_snapshot import person as add_person


def person(session: Session, ref: str, grid: str = "G1", amount: str = "100.00") -> Person:
    """Add a person drawing one benefit."""
    person_id = add_person(session, ref, grid, ("enterprise_pension", amount, "active"))
    return session.get_one(Person, person_id)


def keep_a_roll_of_a_b_and_twenty(engine: Engine) -> tuple[int, int]:
    """Migrate, add A, B and 20 others, and keep their roll; return A's and B's ids."""
    upgrade(engine)
    with Session(engine) as session, session.begin():
        first, second = person(session, "A").id, person(session, "B").id
        for n in range(20):  # a roll large enough for re-reading two persons, not all
            person(session, f"P{n}")
    with Session(engine) as session, session.begin():
        kept_roll(session, keep=True)
    return first, second


def move(engine: Engine, person_id: int, grid: str) -> None:
    """Move a person to another grid in a transaction of its own."""
    with Session(engine) as session, session.begin():
        session.execute(update(Person).where(Person.id == person_id).values(grid_code=grid))


def after_the_reread(monkeypatch: pytest.MonkeyPatch, action: Callable[[], object]) -> list[bool]:
    """Do `action` as soon as a run has re-read the changed persons; return a list it marks."""
    reread = roll_module._reread
    done: list[bool] = []

    def reread_then_act(session: Session, persons: Any) -> pd.DataFrame:
        found = reread(session, persons)
        action()
        done.append(True)
        return found

    monkeypatch.setattr(roll_module, "_reread", reread_then_act)
    # Re-read however many persons look changed: on a busy PostgreSQL cluster the mark is
    # conservative (any older transaction of any database holds it back), and a full read
    # would skip the moment these tests are about.
    monkeypatch.setattr(roll_module, "FULL_READ_SHARE", 1.0)
    return done


def assert_the_next_run_keeps_both_moves(engine: Engine) -> None:
    """Assert the next run keeps what a full read finds: A moved to G2, B to G3."""
    with Session(engine) as session, session.begin():
        after = kept_roll(session, keep=True)
        pd.testing.assert_frame_equal(after, roll_frame(session))
    grids = after.set_index("person_ref")["grid_code"]
    assert (grids["A"], grids["B"]) == ("G2", "G3")


def changes(session: Session) -> int:
    """Return the number of entries in the change log."""
    return int(session.scalar(select(func.count()).select_from(RollChange)) or 0)


def assert_kept_is_full(session: Session) -> pd.DataFrame:
    """Read the kept roll (keeping it) and assert it and its certifications equal a full read."""
    read = read_roll(session, keep=True)
    pd.testing.assert_frame_equal(read.roll, roll_frame(session))
    assert_same_certifications(read.certified, session)
    return read.roll


def assert_same_certifications(kept: pd.DataFrame, session: Session) -> None:
    """Assert the kept roll's certifications are the benefits' as the database holds them."""
    rows = session.execute(
        select(Benefit.person_id, Benefit.benefit_type, Benefit.last_certified_on).where(
            Benefit.last_certified_on.is_not(None)
        )
    ).all()
    want = sorted((int(p), str(t), d) for p, t, d in rows)
    got = sorted(
        (int(p), str(t), d.date())
        for p, t, d in kept[["person_id", "benefit_type", "certified_on"]].itertuples(index=False)
    )
    assert got == want


def test_every_kind_of_change_reaches_the_kept_roll(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Re-read the changed persons however many they are: a full read would prove nothing.
    monkeypatch.setattr(roll_module, "FULL_READ_SHARE", 1.0)
    people = [person(session, f"P{n}", amount=f"{100 + n}.10") for n in range(30)]
    assert len(assert_kept_is_full(session)) == 30
    # The roll and its certifications.
    assert session.scalar(select(func.count()).select_from(RollCache)) == 2
    # A move, a terminated benefit, a second benefit, a new person, one gone, and a change
    # made in plain SQL behind the application's back: the triggers log them all.
    people[0].grid_code = "G9"
    session.execute(
        update(Benefit).where(Benefit.person_id == people[1].id).values(status="terminated")
    )
    session.add(
        Benefit(
            person_id=people[2].id, benefit_type="survivor_pension", monthly_amount=Decimal("5.05"),
            benefit_start=dt.date(2015, 1, 1), status=BenefitStatus.ACTIVE,
        )
    )  # fmt: skip
    person(session, "NEW", grid="G7")
    session.execute(text("DELETE FROM benefits WHERE person_id = :p"), {"p": people[3].id})
    session.execute(text("DELETE FROM persons WHERE id = :p"), {"p": people[3].id})
    session.execute(
        text("UPDATE persons SET region_code = '330999' WHERE id = :p"), {"p": people[4].id}
    )
    # The roll's last certification of a benefit, moved alone (migration 0018), and of a
    # terminated benefit, which still carries its certification over.
    session.execute(
        text("UPDATE benefits SET last_certified_on = '2024-03-01' WHERE person_id = :p"),
        {"p": people[5].id},
    )
    session.execute(
        update(Benefit).where(Benefit.person_id == people[1].id)
        .values(last_certified_on=dt.date(2023, 1, 31))
    )  # fmt: skip
    session.flush()
    kept = assert_kept_is_full(session)
    by_ref = kept.set_index("person_ref")
    assert by_ref.loc["P0", "grid_code"] == "G9"
    assert "P1" not in by_ref.index and "P3" not in by_ref.index
    assert by_ref.loc["P2", "monthly_amount"] == 102.10 + 5.05
    assert by_ref.loc["P4", "region_code"] == "330999"
    assert by_ref.loc["NEW", "grid_code"] == "G7"
    # Nothing changed since: still equal.
    assert_kept_is_full(session)


def test_a_change_of_an_unread_column_is_not_logged(session: Session) -> None:
    first = person(session, "A")
    kept_roll(session, keep=True)
    before = changes(session)
    first.phone = "13800000000"
    first.name = "李"
    session.flush()
    assert changes(session) == before
    first.grid_code = "G2"
    session.flush()
    assert changes(session) > before


def test_keeping_prunes_the_log_and_reading_alone_writes_nothing(session: Session) -> None:
    for n in range(5):
        person(session, f"P{n}")
    assert changes(session) == 10
    kept_roll(session, keep=False)
    assert session.scalar(select(func.count()).select_from(RollCache)) == 0
    kept_roll(session, keep=True)
    # The roll and its certifications.
    assert session.scalar(select(func.count()).select_from(RollCache)) == 2
    if session.get_bind().dialect.name == "sqlite":
        # On PostgreSQL this transaction's own entries stay: it is still running.
        assert changes(session) == 0


def test_a_roll_kept_meanwhile_by_another_run_is_not_overwritten(session: Session) -> None:
    person(session, "A")
    kept_roll(session, keep=True)
    person(session, "B")
    # Another run kept a newer roll after this one read the old: its row must stay.
    session.execute(update(RollCache).values(mark=RollCache.mark + 1000, persons=-7))
    session.flush()
    kept_roll(session, keep=True)
    assert session.scalar(select(RollCache.persons)) == -7


@pytest.mark.parametrize("spoilt", [{"content": b"not parquet"}, {"format": 0}])
def test_an_unreadable_kept_roll_is_read_again_in_full_and_replaced(
    session: Session, spoilt: dict[str, object]
) -> None:
    person(session, "A")
    kept_roll(session, keep=True)
    session.execute(update(RollCache).values(**spoilt))
    person(session, "B")
    assert assert_kept_is_full(session)["person_ref"].tolist() == ["A", "B"]
    assert session.scalar(select(RollCache.format)) == ROLL_FORMAT
    assert session.scalar(select(RollCache.persons)) == 2


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_a_change_committed_while_a_run_reads_is_read_by_the_next(
    backend_name: str, database_url_factory: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url_factory(backend_name))
    first, second = keep_a_roll_of_a_b_and_twenty(engine)
    move(engine, first, "G2")
    # The next run re-reads A; meanwhile another transaction moves B and commits.
    moved = after_the_reread(monkeypatch, lambda: move(engine, second, "G3"))
    with Session(engine) as session, session.begin():
        during = kept_roll(session, keep=True)
    monkeypatch.undo()
    assert moved  # B moved while the run read
    grids = during.set_index("person_ref")["grid_code"]
    assert (grids["A"], grids["B"]) == ("G2", "G1")
    assert_the_next_run_keeps_both_moves(engine)
    engine.dispose()


def test_a_change_logged_before_the_run_but_committed_after_it_is_not_lost(
    database_url_factory: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL only: SQLite runs one writer at a time, so its log ids follow commit order.
    engine = make_engine(database_url_factory("postgresql"))
    first, second = keep_a_roll_of_a_b_and_twenty(engine)
    # B's move takes the lower log id but commits last, after A's move and the run's read.
    slow = Session(engine)
    slow.begin()
    slow.execute(update(Person).where(Person.id == second).values(grid_code="G3"))
    slow.flush()
    move(engine, first, "G2")
    committed = after_the_reread(monkeypatch, slow.commit)
    with Session(engine) as session, session.begin():
        kept_roll(session, keep=True)
    monkeypatch.undo()
    slow.close()
    assert committed  # B's move committed after the run's read
    assert_the_next_run_keeps_both_moves(engine)
    engine.dispose()


_CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("certified_on"), st.integers(0, 5),
                  st.one_of(st.none(), st.dates(dt.date(2020, 1, 1), dt.date(2026, 1, 1)))),
        st.tuples(st.just("benefit_type"), st.integers(0, 5),
                  st.sampled_from(["enterprise_pension", "resident_pension"])),
        st.tuples(st.just("status"), st.integers(0, 5), st.sampled_from(["active", "terminated"])),
        st.tuples(st.just("second_benefit"), st.integers(0, 5), st.dates(dt.date(2020, 1, 1))),
        st.tuples(st.just("read"), st.booleans(), st.none()),
    ),
    max_size=12,
)  # fmt: skip


@settings(
    max_examples=150, deadline=None,  # fewer missed a certification moved alone
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(steps=_CHANGES)
def test_the_kept_roll_s_certifications_equal_a_full_read_after_any_changes(
    session: Session, monkeypatch: pytest.MonkeyPatch, steps: list[tuple[str, Any, Any]]
) -> None:
    """Whatever changes the benefits between reads, plain SQL included, each read (kept or
    not) gives the roll's certifications as the database holds them."""
    monkeypatch.setattr(roll_module, "FULL_READ_SHARE", 1.0)
    example = session.begin_nested()
    try:
        people = [person(session, f"H{n}") for n in range(6)]
        for kind, which, value in steps:
            if kind == "read":
                read = read_roll(session, keep=which)
                assert_same_certifications(read.certified, session)
                pd.testing.assert_frame_equal(read.roll, roll_frame(session))
                continue
            target = people[which].id
            held = set(
                session.scalars(select(Benefit.benefit_type).where(Benefit.person_id == target))
            )
            if value in held or (kind == "second_benefit" and "survivor_pension" in held):
                continue  # one benefit of a type per person
            if kind == "second_benefit":
                session.add(
                    Benefit(
                        person_id=target, benefit_type="survivor_pension",
                        monthly_amount=Decimal("1.00"), benefit_start=dt.date(2015, 1, 1),
                        status=BenefitStatus.ACTIVE, last_certified_on=value,
                    )
                )  # fmt: skip
            else:
                column = "last_certified_on" if kind == "certified_on" else kind
                session.execute(
                    text(
                        f"UPDATE benefits SET {column} = :v WHERE id = "
                        "(SELECT min(id) FROM benefits WHERE person_id = :p)"
                    ),
                    {"v": value, "p": target},
                )
            session.flush()
        assert_same_certifications(read_roll(session, keep=True).certified, session)
    finally:
        example.rollback()
        # The next example's rows may take these ids again.
        session.expunge_all()
