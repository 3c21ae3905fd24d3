"""Silent certification of strong cases, once per cycle."""

from __future__ import annotations

import calendar
import datetime as dt

import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from liveness.certification.policy import CertificationPolicy
from models import Benefit, Certification, CertificationSource


def add_months(day: dt.date, months: int) -> dt.date:
    """Return `day` moved by `months`, clamped to the end of a shorter month."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def valid_until(session: Session, *, policy: CertificationPolicy) -> pd.Series:
    """Return when each person's certification ends (latest, else carried over from the roll)."""
    latest = dict(
        session.execute(
            select(Certification.person_id, func.max(Certification.valid_until)).group_by(
                Certification.person_id
            )
        ).all()
    )
    carried: dict[int, dt.date] = {}
    for person_id, benefit_type, certified_on in session.execute(
        select(Benefit.person_id, Benefit.benefit_type, Benefit.last_certified_on).where(
            Benefit.last_certified_on.is_not(None)
        )
    ):
        if certified_on is None:
            continue
        months = policy.cycle_for(str(benefit_type)).valid_months
        end = add_months(certified_on, months)
        carried[person_id] = min(end, carried.get(person_id, end))
    merged = {**carried, **latest}
    return pd.Series(merged, dtype=object)


def certify_persons(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    proofs: pd.DataFrame,
    policy: CertificationPolicy,
    policy_version: str,
) -> int:
    """Certify persons on a fresh proof of life; return how many.

    `proofs` has person_id, benefit_type, source (a CertificationSource) and evidence (a dict).
    A fresh proof renews the cycle whenever it comes.
    """
    rows = [
        {
            "person_id": int(person_id),
            "source": source,
            "mark": "certified",
            "certified_on": as_of,
            "valid_until": add_months(as_of, policy.cycle_for(str(benefit_type)).valid_months),
            "run_id": run_id,
            "policy_version": policy_version,
            "evidence": evidence,
        }
        for person_id, benefit_type, source, evidence in zip(
            proofs["person_id"], proofs["benefit_type"], proofs["source"], proofs["evidence"],
            strict=True,
        )
    ]  # fmt: skip
    if rows:
        session.execute(insert(Certification), rows)
    return len(rows)


def certify_silently(
    session: Session,
    *,
    run_id: int,
    as_of: dt.date,
    strong: pd.DataFrame,
    policy: CertificationPolicy,
    policy_version: str,
) -> int:
    """Certify strong persons whose certification is due for renewal; return how many.

    `strong` has person_id, benefit_type and reasons. Someone certified recently is not
    certified again until the renewal window of their cycle opens.
    """
    if strong.empty:
        return 0
    ends = valid_until(session, policy=policy)
    rows = []
    for person_id, benefit_type, reasons in zip(
        strong["person_id"], strong["benefit_type"], strong["reasons"], strict=True
    ):
        cycle = policy.cycle_for(str(benefit_type))
        end = ends.get(int(person_id))
        if end is not None and (end - as_of).days > cycle.renewal_window_days:
            continue
        rows.append(
            {
                "person_id": int(person_id),
                "source": CertificationSource.DATA_COMPARISON,
                "mark": "certified",
                "certified_on": as_of,
                "valid_until": add_months(as_of, cycle.valid_months),
                "run_id": run_id,
                "policy_version": policy_version,
                "evidence": reasons,
            }
        )
    if rows:
        session.execute(insert(Certification), rows)
    return len(rows)
