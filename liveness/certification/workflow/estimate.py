"""P(alive) from the learned estimator, where the operator lets the nightly run use it.

Off by default (estimator.toml `[certify] enabled`): then nothing here loads scikit-learn or
reads an artifact. Enabled, the run loads the latest trained artifact and computes P(alive)
on its own snapshot, with the features built as training builds them
(`liveness.estimator.dataset.feature_frame`). The estimator may then certify silently, within
guardrails (`estimator_picks`): an artifact that ranked its held-out persons well enough, a
probability at or above the policy's, and a recent trace of the person's own body, since a
probability learned from under-counted deaths must not certify someone whom only a relative's
card use shows, nor someone whose last own trace may predate their death. It never grades,
lowers or suspends anyone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.arrays import unique_sorted
from liveness.certification import cycle_days, dates_of
from liveness.certification.workflow.context import Context
from liveness.db import query_frame
from liveness.evidence.parts import day_from_number
from liveness.evidence.snapshot import EvidenceSnapshot
from models import Person

ESTIMATOR = "estimator"


@dataclass(frozen=True, eq=False)
class Estimate:
    """P(alive) per roll row (NaN where the run computed none), and the artifact behind it."""

    probability: npt.NDArray[np.float64]
    version: str | None = None
    notes: tuple[str, ...] = ()

    def report(self, *, enabled: bool) -> dict[str, Any]:
        """Return what the run report says of the estimator."""
        return {"enabled": enabled, "artifact": self.version, "notes": list(self.notes)}


def alive_estimate(session: Session, context: Context, *, snapshot: EvidenceSnapshot) -> Estimate:
    """Return P(alive) of the living on the roll, where the estimator is enabled.

    Enabled without a usable artifact (none trained, its file missing or changed, trained on
    other features), the run goes on without it and its report says why.
    """
    config = context.estimator
    n = len(snapshot.roll)
    none = np.full(n, np.nan)
    if config is None or not config.certify_enabled:
        return Estimate(probability=none)
    # Loaded only here: a run that does not use the estimator never imports scikit-learn.
    from liveness.estimator.artifacts import load_artifact
    from liveness.estimator.dataset import EstimatorError, feature_frame, feature_names
    from liveness.estimator.estimator import alive_probability

    try:
        loaded = load_artifact(session)
    except EstimatorError as error:
        return Estimate(probability=none, notes=(f"estimator enabled but not used: {error}",))
    row, scoring = loaded.row, context.scoring
    if list(row.feature_names) != feature_names(policy=scoring, age=config.age):
        return Estimate(
            probability=none,
            notes=(
                f"estimator enabled but not used: artifact {row.version} was trained on other "
                "features than the current policy gives: train a new one",
            ),
        )
    auc = (row.metrics or {}).get("estimator", {}).get("roc_auc")
    if auc is None or not auc >= config.certify_min_roc_auc:
        return Estimate(
            probability=none,
            notes=(
                f"estimator enabled but not used: artifact {row.version} ranked the held-out "
                f"persons with a ROC AUC of {auc} at training, below the "
                f"{config.certify_min_roc_auc} the policy asks",
            ),
        )
    notes = []
    unknown = [k for k in config.own_body_kinds if tuple(k.split(".", 1)) not in scoring.kind_index]
    if unknown:
        notes.append(f"own-body kinds the scoring policy does not know, ignored: {unknown}")
    if row.policy_version != scoring.version:
        notes.append(
            f"artifact {row.version} was trained under scoring policy {row.policy_version}, "
            f"the run grades under {scoring.version}: feature weights may differ"
        )
    living = np.flatnonzero(snapshot.death_day < 0)
    alive = dataclasses.replace(
        snapshot, roll=snapshot.roll.iloc[living], features=snapshot.features.take(living),
        post_death=snapshot.post_death[living],
    )  # fmt: skip
    ages = _ages(session, context, alive.roll["person_id"]) if config.age else None
    probability = none.copy()
    if len(living):
        features = feature_frame(snapshot=alive, policy=scoring, age_years=ages)
        probability[living] = alive_probability(loaded.estimator, features)
    return Estimate(probability=probability, version=row.version, notes=tuple(notes))


def _ages(session: Session, context: Context, person_id: pd.Series) -> npt.NDArray[np.float64]:
    """Return each person's age in years at the run, as the estimator's dataset computes it."""
    as_of = context.as_of
    births = query_frame(
        session, select(Person.id, Person.birth_date).where(context.in_partition(Person.id)),
        ["id", "birth_date"],
    )  # fmt: skip
    birth = dates_of(person_id, births.set_index(births["id"].astype(np.int64))["birth_date"])
    years: npt.NDArray[np.float64] = (np.datetime64(as_of, "D") - birth).astype(np.float64) / 365.25
    return years


@dataclass(frozen=True)
class Picks:
    """Whom the estimator certifies tonight, and how many passed each guardrail."""

    strong: pd.DataFrame  # person_id, benefit_type, reasons: to certify silently
    counts: dict[str, int] = field(default_factory=dict)


def estimator_picks(
    session: Session, context: Context, estimate: Estimate, *, candidates: pd.DataFrame,
    roll: pd.DataFrame, ends: pd.Series,
) -> Picks:  # fmt: skip
    """Return the candidates the estimator certifies silently, with their reasons.

    `candidates` (person_id, benefit_type, level) are the living not strong tonight and not
    certified otherwise; `roll` the snapshot's roll (rows of `estimate`); `ends` their
    certification ends. Certified are those whose renewal window is open, whose P(alive)
    reaches the policy's, and who left a trace of their own body in its last days.
    """
    config = context.estimator
    empty = candidates.iloc[0:0].assign(reasons=pd.Series(dtype=object))
    if estimate.version is None or config is None or candidates.empty:
        return Picks(strong=empty[["person_id", "benefit_type", "reasons"]])
    window = cycle_days(context.policy, candidates["benefit_type"], field="renewal_window_days")
    end = dates_of(candidates["person_id"], ends)
    # The renewal window as `certify_silently` reads it: only those it would certify.
    ahead = (end - np.datetime64(context.as_of, "D")).astype(np.int64)
    in_window = candidates[np.isnat(end) | (ahead <= window)]
    rows = pd.Index(roll["person_id"].astype(np.int64)).get_indexer(
        in_window["person_id"].astype(np.int64)
    )
    probability = estimate.probability[rows]
    likely = probability >= config.certify_min_probability
    above = in_window[likely].assign(probability=probability[likely])
    traces = own_body_traces(
        session, context, persons=above["person_id"].to_numpy(dtype=np.int64),
        kinds=config.own_body_kinds, days=config.own_body_days,
    )  # fmt: skip
    found = above["person_id"].isin(traces.index)
    picked = above[found.to_numpy()]
    trace = traces.reindex(picked["person_id"].astype(np.int64))
    reasons = [
        {
            "by": ESTIMATOR, "probability": round(float(p), 4), "artifact": estimate.version,
            "min_probability": config.certify_min_probability, "level": level,
            "own_body": {"kind": kind, "day": day.isoformat()},
        }
        for p, level, kind, day in zip(
            picked["probability"], picked["level"], trace["kind"], trace["day"], strict=True
        )
    ]  # fmt: skip
    return Picks(
        strong=picked[["person_id", "benefit_type"]].assign(reasons=reasons),
        counts={
            "in_renewal_window": len(in_window),
            "above_min_probability": len(above),
            "without_own_body_trace": int((~found).sum()),
            "certified": len(picked),
        },
    )


def own_body_traces(
    session: Session, context: Context, *, persons: npt.NDArray[np.int64],
    kinds: tuple[str, ...], days: int,
) -> pd.DataFrame:  # fmt: skip
    """Return, per person with one, their latest own-body trace in the last `days` days.

    `kinds` are "source.kind" names; indexed by person id, with `kind` ("source.kind") and
    `day`. Only the sources that have such kinds are read, only those kinds kept.
    """
    scoring = context.scoring
    wanted = [kind for kind in kinds if tuple(kind.split(".", 1)) in scoring.kind_index]
    ids = unique_sorted(persons)
    if not wanted or ids.size == 0:
        return pd.DataFrame({"kind": [], "day": []}, index=pd.Index([], dtype=np.int64))
    code = {kind: k for k, kind in enumerate(wanted)}
    best = np.full(ids.size, -1, dtype=np.int64)
    first_day = context.as_of - dt.timedelta(days=days - 1)
    for source in dict.fromkeys(kind.split(".", 1)[0] for kind in wanted):
        codes = {k.split(".", 1)[1]: c for k, c in code.items() if k.startswith(f"{source}.")}
        for batch in context.store.read_window(
            session, source=source, first_day=first_day, last_day=context.as_of, kinds=codes,
            persons=(int(ids[0]), int(ids[-1]) + 1),
        ):  # fmt: skip
            at = np.minimum(np.searchsorted(ids, batch.person_id), ids.size - 1)
            keep = (ids[at] == batch.person_id) & (batch.kind >= 0)
            # The latest trace wins; on one day, the kind listed last: one number holds both.
            key = batch.day[keep].astype(np.int64) * len(wanted) + batch.kind[keep]
            np.maximum.at(best, at[keep], key)
    has = best >= 0
    day, kind = np.divmod(best[has], len(wanted))
    return pd.DataFrame(
        {
            "kind": np.asarray(wanted, dtype=object)[kind],
            "day": [day_from_number(int(d)) for d in day.tolist()],
        },
        index=pd.Index(ids[has], dtype=np.int64),
    )
