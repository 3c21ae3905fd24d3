"""An evidence snapshot: everything known about every person on the roll as of one day.

The run grades from it and the learned estimator trains on it, so both see the same features.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.errors import RollMissing
from liveness.evidence.health import HealthPolicy, source_health
from liveness.evidence.store import EvidenceStore, day_number
from liveness.scoring import EvidenceFeatures, ScoringPolicy, compute_features, post_death_traces
from models import (
    Benefit,
    BenefitStatus,
    DeathMatch,
    DeathRecord,
    Person,
    RecordStatus,
)

ACTING_MATCHES = (DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC)


@dataclass(frozen=True, eq=False)
class EvidenceSnapshot:
    """The roll, its linked traces, death evidence and features as of one day.

    Arrays are indexed by the dense person index: the row of the person in `roll`.
    """

    as_of: dt.date
    roll: pd.DataFrame
    traces: dict[str, np.ndarray]
    deaths: pd.DataFrame
    first_death: pd.Series
    death_day: np.ndarray
    features: EvidenceFeatures
    post_death: np.ndarray
    outages: dict[str, list[dt.date]]

    @property
    def degraded(self) -> np.ndarray:
        """Return, per scoring source, whether it was degraded in the recent window."""
        return np.array([bool(days) for days in self.outages.values()], dtype=bool)


def roll_frame(session: Session) -> pd.DataFrame:
    """Return one row per person drawing a benefit, with their main benefit's type and amount."""
    rows = session.execute(
        select(
            Person.id, Person.person_ref, Person.grid_code, Person.region_code,
            Benefit.benefit_type, Benefit.monthly_amount, Benefit.status,
        )
        .join(Benefit, Benefit.person_id == Person.id)
        .where(Benefit.status != BenefitStatus.TERMINATED)
        .order_by(Person.id, Benefit.id)
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows,
        columns=[
            "person_id", "person_ref", "grid_code", "region_code", "benefit_type",
            "monthly_amount", "benefit_status",
        ],
    )  # fmt: skip
    frame["benefit_type"] = frame["benefit_type"].astype(object).map(str)
    frame["monthly_amount"] = frame["monthly_amount"].astype(float)
    # A person is graded once; the monthly amount at stake is the sum of their benefits.
    totals = frame.groupby("person_id")["monthly_amount"].sum()
    frame = frame.drop_duplicates("person_id").reset_index(drop=True)
    frame["monthly_amount"] = totals.reindex(frame["person_id"]).to_numpy()
    return frame


def _death_evidence(session: Session, as_of: dt.date) -> pd.DataFrame:
    """Return active death records known by `as_of` that name a person."""
    rows = session.execute(
        select(
            DeathRecord.person_id, DeathRecord.died_on, DeathRecord.match, DeathRecord.source,
            DeathRecord.record_id, DeathRecord.name, DeathRecord.recorded_on,
        ).where(
            DeathRecord.status == RecordStatus.ACTIVE,
            DeathRecord.person_id.is_not(None),
            DeathRecord.recorded_on <= as_of,
            DeathRecord.died_on <= as_of,
        )
    ).all()  # fmt: skip
    frame = pd.DataFrame(
        rows,
        columns=["person_id", "died_on", "match", "source", "record_id", "name", "recorded_on"],
    )
    frame["match"] = frame["match"].astype(object).map(str)
    return frame


def _traces(
    session: Session, *, store: EvidenceStore, policy: ScoringPolicy, as_of: dt.date,
    dense: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Read the long window's linked traces as policy-coded arrays over the dense index."""
    first_day = as_of - dt.timedelta(days=policy.long - 1)
    parts: dict[str, list[np.ndarray]] = {"person": [], "source": [], "kind": [], "day": []}
    kind_index = policy.kind_index
    for source_code, source in enumerate(policy.sources):
        window = store.read_window(session, source=source, first_day=first_day, last_day=as_of)
        if len(window) == 0:
            continue
        inside = window.person_id < len(dense)
        person = np.where(inside, dense[np.where(inside, window.person_id, 0)], -1)
        kinds, inverse = np.unique(window.kind.astype(str), return_inverse=True)
        known = np.array([kind_index.get((source, k), -1) for k in kinds], dtype=np.int16)
        kind = known[inverse]
        keep = (person >= 0) & (kind >= 0)
        parts["person"].append(person[keep].astype(np.int32))
        parts["source"].append(np.full(int(keep.sum()), source_code, dtype=np.int8))
        parts["kind"].append(kind[keep])
        parts["day"].append(window.day[keep])
    empty = {"person": np.int32, "source": np.int8, "kind": np.int16, "day": np.int32}
    return {
        key: np.concatenate(values) if values else np.empty(0, dtype=empty[key])
        for key, values in parts.items()
    }


def take_snapshot(
    session: Session,
    *,
    as_of: dt.date,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    health: HealthPolicy,
) -> EvidenceSnapshot:
    """Read the roll, the long window's traces and death evidence; compute the features."""
    roll = roll_frame(session)
    if roll.empty:
        raise RollMissing("the benefit roll is empty: ingest the registry source first")
    ids = roll["person_id"].to_numpy()
    dense = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    dense[ids] = np.arange(len(ids))
    traces = _traces(session, store=store, policy=scoring, as_of=as_of, dense=dense)
    deaths = _death_evidence(session, as_of)
    # A source that collapsed in the recent window is degraded: its silence lowers nobody
    # (grading credits what the person showed before the outage).
    outages = source_health(
        session, sources=scoring.sources,
        first_day=as_of - dt.timedelta(days=scoring.recent - 1), last_day=as_of, policy=health,
    )  # fmt: skip
    acting = deaths[deaths["match"].isin([m.value for m in ACTING_MATCHES])]
    first_death = acting.groupby("person_id")["died_on"].min()
    death_day = np.full(len(roll), -1, dtype=np.int32)
    known = first_death.index.to_numpy()
    on_roll = known[known < len(dense)]
    on_roll = on_roll[dense[on_roll] >= 0]
    death_day[dense[on_roll]] = [day_number(first_death[p]) for p in on_roll]
    features = compute_features(
        person_idx=traces["person"], source_code=traces["source"], kind_code=traces["kind"],
        day=traces["day"], n_persons=len(roll), as_of_day=day_number(as_of), policy=scoring,
    )  # fmt: skip
    post_death = post_death_traces(
        person_idx=traces["person"], kind_code=traces["kind"], day=traces["day"],
        death_day=death_day, policy=scoring,
    )  # fmt: skip
    return EvidenceSnapshot(
        as_of=as_of, roll=roll, traces=traces, deaths=deaths, first_death=first_death,
        death_day=death_day, features=features, post_death=post_death, outages=outages,
    )  # fmt: skip
