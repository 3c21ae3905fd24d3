"""Features and labels for the estimator, from an evidence snapshot and outcomes known later.

Label definition, for an as-of day D and a horizon of H days:

- excluded: persons whose death was already known at D (the rules grade them deceased), and
  persons who passed a face verification after their recorded death (a wrong record or a
  fraud: neither is a clean label);
- dead (0): an acting death record (matched by identity number or demographics, not voided)
  dates the death on or before D + H. This includes deaths before D recorded only after D:
  exactly the people a review queue should find first. Every record stored now counts,
  whenever it was recorded, so retraining the same D later may see more deaths;
- alive (1): everyone else. ``confirmed`` marks the alive who passed a face verification
  in (D, D + H], the only positive proof of life we have.

Bias: deaths that leave no record (rural burials, deaths in other provinces) are labelled
alive, so the labels under-count deaths and P(alive) is optimistic for people who look like
them; the dead who do leave records are over-represented by those who die in hospital or
are cremated. Visit outcomes will be a better label source once reviews record them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from liveness.db import any_ids
from liveness.errors import LivenessError
from liveness.evidence.health import HealthPolicy
from liveness.evidence.parts import day_number
from liveness.evidence.snapshot import ACTING_MATCHES, EvidenceSnapshot, take_snapshot
from liveness.evidence.store import EvidenceStore
from liveness.scoring import BENEFIT_TYPES, ScoringPolicy
from models import DeathRecord, EvidencePart, Person, RecordStatus

__all__ = [
    "Dataset",
    "EstimatorError",
    "build_dataset",
    "feature_frame",
    "feature_names",
    "held_out",
    "label_persons",
]


class EstimatorError(LivenessError):
    """The estimator cannot be trained or evaluated with the data or artifacts at hand."""

    exit_code = 12
    http_status = 409


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and labels of the persons alive as far as was known at ``as_of``.

    ``rows`` are the persons' rows in ``snapshot.roll``; ``alive`` is 1 or 0.
    """

    as_of: dt.date
    horizon_days: int
    features: pd.DataFrame
    alive: npt.NDArray[np.int8]
    confirmed: npt.NDArray[np.bool_]
    rows: npt.NDArray[np.intp]
    snapshot: EvidenceSnapshot

    @property
    def person_ref(self) -> npt.NDArray[np.object_]:
        """Return the persons' references, in row order."""
        return self.snapshot.roll["person_ref"].to_numpy(dtype=object)[self.rows]


def feature_names(*, policy: ScoringPolicy, age: bool) -> list[str]:
    """Return the estimator's feature names under a scoring policy, in column order."""
    per_source = [
        f"{source}_{name}"
        for source in policy.sources
        for name in ("last_age_days", "recent_weight", "long_weight")
    ]
    return [
        *per_source,
        "agreeing_sources",
        "face_pass_age_days",
        "post_death_traces",
        *(f"benefit_{name}" for name in BENEFIT_TYPES),
        *(["age_years"] if age else []),
    ]


def feature_frame(
    *,
    snapshot: EvidenceSnapshot,
    policy: ScoringPolicy,
    age_years: npt.NDArray[np.float64] | None = None,
) -> pd.DataFrame:
    """Build one row of features per person on the snapshot's roll, in roll order.

    ``age_years`` (per person, at the as-of day) adds the one feature the rules do not use.
    """
    features = snapshot.features
    as_of_day = features.as_of_day
    # No trace in the long window reads as "as old as the window": the snapshot saw no further.
    cap = policy.long
    age = np.where(features.last_day >= 0, as_of_day - features.last_day, cap)
    age = np.minimum(age, cap).astype(np.float32)
    n_sources = len(policy.sources)
    per_source = np.stack([age, features.recent_weight, features.long_weight], axis=2).reshape(
        features.n_persons, n_sources * 3
    )
    face = features.face_pass_day
    face_age = np.minimum(np.where(face >= 0, as_of_day - face, cap), cap).astype(np.float32)
    benefit = snapshot.roll["benefit_type"].to_numpy(dtype=object)
    one_hot = (benefit[:, None] == np.asarray(BENEFIT_TYPES, dtype=object)[None, :]).astype(
        np.float32
    )
    values = np.column_stack(
        [
            per_source,
            features.recent_sources.astype(np.float32),
            face_age,
            snapshot.post_death.astype(np.float32),
            one_hot,
            *([] if age_years is None else [np.asarray(age_years, dtype=np.float32)]),
        ]
    )
    return pd.DataFrame(values, columns=feature_names(policy=policy, age=age_years is not None))


def label_persons(
    *,
    horizon_end_day: int,
    known_death_day: npt.NDArray[np.int32],
    death_day: npt.NDArray[np.int32],
    face_pass_day: npt.NDArray[np.int32],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
    """Return who is included, their label (1 alive, 0 dead) and whether it is confirmed.

    Arrays are per person, -1 where none: ``known_death_day`` the death known at the as-of
    day, ``death_day`` the first acting death record's day known now, ``face_pass_day`` the
    last settling face pass after the as-of day, within the horizon.
    """
    dead = (death_day >= 0) & (death_day <= horizon_end_day)
    conflict = dead & (face_pass_day > death_day)
    included = (known_death_day < 0) & ~conflict
    alive = (~dead).astype(np.int8)
    confirmed = dead | (face_pass_day >= 0)
    return included, alive, confirmed


def held_out(
    *, person_ref: npt.NDArray[np.object_], alive: npt.NDArray[np.int8], share: float, salt: str
) -> npt.NDArray[np.bool_]:
    """Mark a share of persons, in each class, as held out: the same persons on every run.

    Persons are ordered by a salted hash of their reference, so the held-out set does not
    depend on the order of the roll and stays put as the roll grows.
    """
    key = _hash_key(salt)
    order_key = pd.util.hash_array(np.asarray(person_ref, dtype=object), hash_key=key)
    test = np.zeros(len(alive), dtype=np.bool_)
    for label in (0, 1):
        members = np.flatnonzero(alive == label)
        take = round(share * len(members))
        test[members[np.argsort(order_key[members], kind="stable")[:take]]] = True
    return test


def _hash_key(salt: str) -> str:
    # pandas wants a 16-character key; the salt may be any length.
    return hashlib.sha256(salt.encode("utf-8")).hexdigest()[:16]


# Long by design: a linear recipe: snapshot, deaths, later face passes, labels.
def build_dataset(
    session: Session,
    *,
    as_of: dt.date,
    horizon_days: int,
    store: EvidenceStore,
    scoring: ScoringPolicy,
    health: HealthPolicy,
    age: bool,
    snapshots: dict[dt.date, EvidenceSnapshot] | None = None,
) -> Dataset:
    """Take the snapshots as of ``as_of`` and the horizon's end; label from later outcomes.

    ``snapshots`` caches snapshots by day across calls (training and evaluation share some).
    """
    horizon_end = as_of + dt.timedelta(days=horizon_days)
    evidence_until = session.scalar(select(func.max(EvidencePart.max_day)))
    if evidence_until is None or evidence_until < horizon_end:
        raise EstimatorError(
            f"labels as of {as_of} with a {horizon_days}-day horizon need outcomes up to "
            f"{horizon_end}, and the evidence reaches {evidence_until or 'no day at all'}: "
            "choose an earlier date or a shorter horizon"
        )
    evidence_from = session.scalar(select(func.min(EvidencePart.min_day)))
    if evidence_from is not None and as_of < evidence_from:
        # Nothing is known of anyone yet: every person would be a trace-less "alive" label.
        raise EstimatorError(
            f"as of {as_of} no evidence exists yet (it starts on {evidence_from}): choose a "
            "date after it"
        )
    cache = {} if snapshots is None else snapshots

    def snapshot_at(day: dt.date) -> EvidenceSnapshot:
        if day not in cache:
            cache[day] = take_snapshot(
                session, as_of=day, store=store, scoring=scoring, health=health
            )
        return cache[day]

    snapshot = snapshot_at(as_of)
    roll_ids = snapshot.roll["person_id"].to_numpy()
    position = pd.Index(roll_ids)

    deaths = session.execute(
        select(DeathRecord.person_id, func.min(DeathRecord.died_on))
        .where(
            DeathRecord.status == RecordStatus.ACTIVE,
            DeathRecord.person_id.is_not(None),
            DeathRecord.match.in_(ACTING_MATCHES),
            DeathRecord.died_on <= horizon_end,
        )
        .group_by(DeathRecord.person_id)
    ).all()
    death_day = np.full(len(roll_ids), -1, dtype=np.int32)
    if deaths:
        ids, days = zip(*deaths, strict=True)
        rows = position.get_indexer(list(ids))
        found = rows >= 0
        death_day[rows[found]] = np.array([day_number(d) for d in days], dtype=np.int32)[found]

    # The snapshot at the horizon's end holds each person's last settling face pass by then;
    # one after the as-of day is a proof of life within the horizon.
    later = snapshot_at(horizon_end)
    face_pass_day = np.full(len(roll_ids), -1, dtype=np.int32)
    rows = position.get_indexer(later.roll["person_id"].to_numpy())
    found = rows >= 0
    passed = later.features.face_pass_day[found]
    face_pass_day[rows[found]] = np.where(passed > day_number(as_of), passed, -1)

    included, alive, confirmed = label_persons(
        horizon_end_day=day_number(horizon_end),
        known_death_day=snapshot.death_day,
        death_day=death_day,
        face_pass_day=face_pass_day,
    )
    rows = np.flatnonzero(included)
    age_years = None
    if age:
        births = session.execute(
            select(Person.id, Person.birth_date).where(
                Person.id.in_(any_ids(session, roll_ids.tolist()))
            )
        ).all()
        birth = pd.Series(
            np.array([b for _, b in births], dtype="datetime64[D]"), index=[i for i, _ in births]
        ).reindex(roll_ids)
        age_years = (np.datetime64(as_of, "D") - birth.to_numpy()).astype(np.float64) / 365.25
    return Dataset(
        as_of=as_of,
        horizon_days=horizon_days,
        features=feature_frame(snapshot=snapshot, policy=scoring, age_years=age_years)
        .iloc[rows]
        .reset_index(drop=True),
        alive=alive[rows],
        confirmed=confirmed[rows],
        rows=rows,
        snapshot=snapshot,
    )
