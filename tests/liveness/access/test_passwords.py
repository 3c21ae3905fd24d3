"""People's passwords: hashed, never kept in clear; lock-out after failures; one-time codes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.access import (
    Attempt,
    PasswordInvalid,
    check_code,
    check_password,
    create_client,
    load_sign_in_policy,
    set_password,
)
from liveness.access.passwords import SignInPolicy, disable_code, enable_code, unlock
from liveness.errors import ConfigurationError, NotFound
from models import AuditEntry, ClientPassword, Role

REPO = Path(__file__).resolve().parents[3]
# The roles that have pages (api.web.pages.HOME_BY_ROLE): the core is told, it does not know.
PAGES = frozenset({Role.GRID_WORKER, Role.OPERATOR, Role.ADMIN, Role.AUDITOR, Role.INSPECTOR})
POLICY = load_sign_in_policy(REPO / "config" / "access.toml")
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
PASSWORD = "walk the grid 7"


def _worker(session: Session, name: str = "wang.li") -> int:
    create_client(session, name=name, role=Role.GRID_WORKER, grids=["G1"])
    client = set_password(session, name=name, password=PASSWORD, policy=POLICY, now=T0)
    return client.id


def _refusals(session: Session) -> list[AuditEntry]:
    query = select(AuditEntry).where(AuditEntry.action == "web.sign_in.refused")
    return list(session.scalars(query.order_by(AuditEntry.id)))


def test_the_password_is_stored_as_an_argon2_hash_never_in_clear(session: Session) -> None:
    client_id = _worker(session)
    row = session.get_one(ClientPassword, client_id)
    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    # Salted: the same password set again hashes differently.
    before = row.password_hash
    set_password(session, name="wang.li", password=PASSWORD, policy=POLICY, now=T0)
    assert row.password_hash != before


def test_a_right_password_signs_in_and_is_audited(session: Session) -> None:
    client_id = _worker(session)
    result = check_password(
        session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=T0
    )
    assert result.attempt == Attempt.SIGNED_IN
    assert result.principal is not None and result.principal.client_id == client_id
    assert result.principal.grids == ("G1",)
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "web.sign_in")).one()
    assert entry.actor == "wang.li" and entry.detail == {"via": "password"}


def test_a_wrong_password_or_name_is_refused_and_audited_as_refused(session: Session) -> None:
    _worker(session)
    create_client(session, name="machine", role=Role.OPERATOR)
    tries = {
        "wrong_password": ("wang.li", "walk the grid 8"),
        "unknown_name": ("nobody", PASSWORD),
        "no_password": ("machine", PASSWORD),
    }
    for reason, (name, password) in tries.items():
        result = check_password(
            session, name=name, password=password, policy=POLICY, roles=PAGES, now=T0
        )
        assert result.attempt == Attempt.REFUSED and result.principal is None, reason
        assert result.reason == reason
    entries = _refusals(session)
    assert [e.detail["reason"] for e in entries] == list(tries)
    assert entries[0].actor == "wang.li" and entries[0].target_type == "client"
    assert entries[1].actor == "anonymous" and entries[1].detail["name"] == "nobody"
    assert not session.scalars(select(AuditEntry).where(AuditEntry.action == "web.sign_in")).all()


def test_a_client_of_a_role_without_pages_is_refused_after_its_password(session: Session) -> None:
    create_client(session, name="bank", role=Role.PAYMENT)
    set_password(session, name="bank", password=PASSWORD, policy=POLICY, now=T0)
    result = check_password(
        session, name="bank", password=PASSWORD, policy=POLICY, roles=PAGES, now=T0
    )
    assert result.attempt == Attempt.REFUSED and result.reason == "no_pages"
    assert _refusals(session)[-1].detail["reason"] == "no_pages"


def test_repeated_failures_lock_the_account_until_the_period_ends(session: Session) -> None:
    _worker(session)
    now = T0
    for attempt in range(POLICY.max_failures):
        result = check_password(
            session, name="wang.li", password="guess", policy=POLICY, roles=PAGES, now=now
        )
        assert result.reason == "wrong_password"
        assert (result.locked_until is None) == (attempt < POLICY.max_failures - 1)
        now += dt.timedelta(seconds=10)
    lock_ends = now - dt.timedelta(seconds=10) + dt.timedelta(minutes=POLICY.lock_minutes)
    # Locked: even the right password is refused, and answered like a wrong one.
    locked = check_password(
        session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=now
    )
    assert locked.attempt == Attempt.REFUSED and locked.reason == "locked"
    assert locked.locked_until == lock_ends
    assert _refusals(session)[-1].detail["reason"] == "locked"
    # Attempts while locked do not extend the lock.
    still = lock_ends - dt.timedelta(seconds=1)
    assert (
        check_password(
            session, name="wang.li", password="x", policy=POLICY, roles=PAGES, now=still
        ).reason
        == "locked"
    )
    after = check_password(
        session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=lock_ends
    )
    assert after.attempt == Attempt.SIGNED_IN
    # A success restarts the count.
    assert session.get_one(ClientPassword, after.client_id).failures == 0


def test_the_administrator_unlocks_and_a_new_password_unlocks(session: Session) -> None:
    _worker(session)
    for _ in range(POLICY.max_failures):
        check_password(
            session, name="wang.li", password="guess", policy=POLICY, roles=PAGES, now=T0
        )
    assert (
        check_password(
            session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=T0
        ).reason
        == "locked"
    )
    unlock(session, name="wang.li")
    assert check_password(
        session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=T0
    ).principal
    for _ in range(POLICY.max_failures):
        check_password(
            session, name="wang.li", password="guess", policy=POLICY, roles=PAGES, now=T0
        )
    set_password(session, name="wang.li", password="a new one 2026", policy=POLICY, now=T0)
    assert check_password(
        session, name="wang.li", password="a new one 2026", policy=POLICY, roles=PAGES, now=T0
    ).principal


def test_a_one_time_code_is_asked_after_the_password_when_enabled(session: Session) -> None:
    client_id = _worker(session)
    _, secret = enable_code(session, name="wang.li")
    first = check_password(
        session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=T0
    )
    assert first.attempt == Attempt.CODE_REQUIRED and first.principal is None
    if pyotp.TOTP(secret).at(T0) == "000000":  # one chance in a million
        pytest.skip("the code of T0 happens to be 000000")
    wrong = check_code(
        session, client_id=client_id, code="000000", policy=POLICY, roles=PAGES, now=T0
    )
    assert wrong.attempt == Attempt.REFUSED and wrong.reason == "wrong_code"
    code = pyotp.TOTP(secret).at(T0)
    done = check_code(
        session,
        client_id=client_id,
        code=f"{code[:3]} {code[3:]}",
        policy=POLICY,
        roles=PAGES,
        now=T0,
    )
    assert done.attempt == Attempt.SIGNED_IN and done.principal is not None
    entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "web.sign_in")).one()
    assert entry.detail == {"via": "password+code"}
    # A code is good once: the same one, a moment later, is refused.
    replay = check_code(
        session,
        client_id=client_id,
        code=code,
        policy=POLICY,
        roles=PAGES,
        now=T0 + dt.timedelta(seconds=5),
    )
    assert replay.reason == "code_reused"
    # A phone a step behind is forgiven; two steps behind (beyond code_drift_steps) is not.
    later = T0 + dt.timedelta(minutes=5)
    behind = pyotp.TOTP(secret).at(later - dt.timedelta(seconds=30 * POLICY.code_drift_steps))
    assert check_code(
        session, client_id=client_id, code=behind, policy=POLICY, roles=PAGES, now=later
    ).principal
    too_old = pyotp.TOTP(secret).at(
        later - dt.timedelta(seconds=30 * (POLICY.code_drift_steps + 2))
    )
    assert (
        check_code(
            session,
            client_id=client_id,
            code=too_old,
            policy=POLICY,
            roles=PAGES,
            now=later + dt.timedelta(seconds=30),
        ).principal
        is None
    )
    disable_code(session, name="wang.li")
    assert check_password(
        session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=later
    ).principal


def test_wrong_codes_count_towards_the_lock(session: Session) -> None:
    client_id = _worker(session)
    enable_code(session, name="wang.li")
    results = [
        check_code(session, client_id=client_id, code="12345x", policy=POLICY, roles=PAGES, now=T0)
        for _ in range(POLICY.max_failures)
    ]
    assert results[-1].locked_until == T0 + dt.timedelta(minutes=POLICY.lock_minutes)
    assert (
        check_password(
            session, name="wang.li", password=PASSWORD, policy=POLICY, roles=PAGES, now=T0
        ).reason
        == "locked"
    )


def test_passwords_that_cannot_be_set_are_refused_clearly(session: Session) -> None:
    create_client(session, name="li", role=Role.OPERATOR)
    for bad, words in (
        ("short", "at least"),
        ("x" * (POLICY.max_password_length + 1), "at most"),
        (" padded password ", "spaces"),
        ("LI" + "", "at least"),
    ):
        with pytest.raises(PasswordInvalid, match=words):
            set_password(session, name="li", password=bad, policy=POLICY, now=T0)
    lenient = dataclasses.replace(POLICY, min_password_length=1)
    with pytest.raises(PasswordInvalid, match="name"):
        set_password(session, name="li", password="LI", policy=lenient, now=T0)
    with pytest.raises(NotFound):
        set_password(session, name="nobody", password=PASSWORD, policy=POLICY, now=T0)
    with pytest.raises(PasswordInvalid, match="no password"):
        enable_code(session, name="li")


def test_the_policy_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "access.toml"
    text = (REPO / "config" / "access.toml").read_text()
    assert isinstance(load_sign_in_policy(REPO / "config" / "access.toml"), SignInPolicy)
    for broken, words in (
        (text.replace("max_failures = 5", "max_failures = 0"), "max_failures"),
        (text + "\nlockout = 3\n", "not a setting"),
        (text.replace("min_password_length = 8", "min_password_length = 500"), "exceeds"),
    ):
        path.write_text(broken)
        with pytest.raises(ConfigurationError, match=words):
            load_sign_in_policy(path)
