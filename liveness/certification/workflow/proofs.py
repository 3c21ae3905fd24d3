"""Weigh the run's proofs of life against the death records, and certify the living."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from liveness.arrays import union_sorted, unique_sorted
from liveness.certification import certify_persons, certify_silently
from liveness.certification.service import CertificationEnds
from liveness.certification.workflow.context import Context, WorkflowResult
from liveness.certification.workflow.estimate import Estimate, estimator_picks
from liveness.certification.workflow.frames import (
    date_of_day,
    earliest_dates,
    face_results,
    frame_in,
    of_persons,
    proofs_of_life,
    sorted_ids,
)
from liveness.certification.workflow.moments import strongest_moments
from liveness.certification.workflow.settle import Settled
from liveness.db import IN_CHUNK, read_frame
from liveness.lists import suspended_benefits
from models import (
    Benefit,
    BenefitStatus,
    Certification,
    CertificationSource,
    DeathMatch,
    DeathRecord,
    ListReason,
    RecordStatus,
    Run,
    RunStatus,
    VisitOutcome,
)

ALIVE_OUTCOMES = (VisitOutcome.ALIVE_CONFIRMED, VisitOutcome.IN_HOSPITAL)


# Death records whose match names their person: they act (a review's death among them).
ACTING = (DeathMatch.ID_NUMBER, DeathMatch.DEMOGRAPHIC)


PROOF_SOURCES = (CertificationSource.FACE, CertificationSource.VISIT, CertificationSource.PROXY)


@dataclass(frozen=True)
class Findings:
    """What the run holds of life and death once the proofs are weighed against death records."""

    proofs: pd.DataFrame  # each living person's newest proof of life, news to this run
    standing: pd.DataFrame  # the acting death records no proof of life refuted
    died_on: pd.Series  # per person a standing record names, their earliest date of death
    dead: set[int]  # the persons of `died_on`


@dataclass(frozen=True)
class Certified:
    """Who the run certified, and until when everyone's certification now holds."""

    proof_of_life: set[int]  # persons certified on a proof of life
    # per person, the day their certification holds until, as datetime64 (compared as a
    # column: a million date objects cost a conversion at every reader)
    ends: pd.Series
    # persons this run certified whose certification holds as of it: sorted distinct ids
    certified_now: npt.NDArray[np.int64]
    # persons certified silently for a night between runs on which they were strong
    earlier_night: set[int] = field(default_factory=set)
    # persons certified silently as likely alive by the learned estimator
    by_estimator: set[int] = field(default_factory=set)
    # per person, the latest end the engine recorded, this run's included (`keep_ends` keeps
    # it; a partitioned run keeps every partition's at once, after the last)
    recorded: pd.Series = field(default_factory=lambda: pd.Series(dtype="datetime64[ns]"))


def _running(ends: pd.Series, persons: npt.NDArray[np.int64], *, as_of: dt.date) -> Any:
    """Return whether each person's certification (`ends`, by person id) runs past `as_of`."""
    if not ends.index.is_monotonic_increasing:
        ends = ends.sort_index()
    index = ends.index.to_numpy(dtype=np.int64)
    if not len(index):
        return np.zeros(len(persons), dtype=bool)
    at = np.minimum(np.searchsorted(index, persons), len(index) - 1)
    return (index[at] == persons) & (ends.to_numpy()[at] > np.datetime64(as_of, "D"))


def _certified_earlier_today(session: Session, context: Context) -> npt.NDArray[np.int64]:
    """Return whom an earlier published run of the same date certified (a rerun's case)."""
    earlier = select(Run.id).where(
        Run.as_of == context.as_of, Run.status == RunStatus.PUBLISHED, Run.id != context.run_id
    )
    if session.scalar(earlier.limit(1)) is None:
        return np.empty(0, dtype=np.int64)
    persons = session.scalars(
        select(Certification.person_id).where(
            Certification.run_id.in_(earlier), context.in_partition(Certification.person_id)
        )
    ).all()
    return unique_sorted(np.asarray(persons, dtype=np.int64))


def gather_proofs(
    session: Session, context: Context, settled: Settled, *, roll: pd.DataFrame,
    result: WorkflowResult,
) -> Findings:  # fmt: skip
    """Gather the run's proofs of life, refute the deaths they contradict; keep what stands."""
    benefit_type = roll.set_index("person_id")["benefit_type"]
    acting = _acting_deaths(session, context)
    proofs = _new_proofs(session, context, settled, acting=acting)
    # The roll leaves out benefits the list terminated for a death, yet a proof of life after
    # the death reinstates them: those persons' proofs count, for the terminated benefit's type.
    benefit_type = pd.concat(
        [benefit_type, _ended_by_death(session, proofs["person_id"], on_roll=benefit_type.index)]
    )
    proofs = proofs[proofs["person_id"].isin(benefit_type.index)]
    # Proof of life dated after a death refutes it; what stands is this run's deaths.
    standing = _refute(session, acting, proofs)
    result.refuted_death_records = len(acting) - len(standing)
    died_on = earliest_dates(standing.set_index("person_id")["died_on"])
    dead = set(died_on.index.astype(int))
    # The dead are certified by nothing; the living by their newest proof.
    proofs = proofs[~proofs["person_id"].isin(dead)].sort_values("day")
    proofs = proofs.drop_duplicates("person_id", keep="last")
    proofs = proofs.assign(
        benefit_type=benefit_type.reindex(proofs["person_id"]).to_numpy(),
        evidence=[{**e, "proof_day": d.isoformat()}
                  for e, d in zip(proofs["evidence"], proofs["day"], strict=True)],
    )  # fmt: skip
    return Findings(proofs=proofs, standing=standing, died_on=died_on, dead=dead)


def _new_proofs(
    session: Session, context: Context, settled: Settled, *, acting: pd.DataFrame
) -> pd.DataFrame:
    """Return the proofs of life that no earlier run certified."""
    outcomes = settled.outcomes
    alive = outcomes[outcomes["outcome"].isin([str(o) for o in ALIVE_OUTCOMES])]
    # Whose own face passing counts unasked: the suspended (or terminated) from the day it took
    # effect, those a death record names from the day after their death.
    suspended = suspended_benefits(session, context.in_partition(Benefit.person_id))
    since = earliest_dates(
        pd.concat(
            [
                suspended.set_index("person_id")["effective_on"],
                acting.set_index("person_id")["died_on"].map(lambda d: d + dt.timedelta(days=1)),
            ]
        )
    )
    proofs = pd.concat(
        [
            settled.face_proofs,
            _face_passes(session, context, since),
            proofs_of_life(alive["person_id"], [CertificationSource.VISIT] * len(alive),
                           alive["day"], ({"review_task": int(t)} for t in alive["id"])),
        ],
        ignore_index=True,
    )  # fmt: skip
    # A proof already certified by an earlier run is no news: a rerun certifies nothing twice.
    used = past_proofs(session, sorted(set(proofs["person_id"].astype(int))))
    return proofs[~(pd.to_datetime(proofs["day"]) <= pd.to_datetime(proofs["person_id"].map(used)))]


def _ended_by_death(session: Session, persons: pd.Series, *, on_roll: pd.Index) -> pd.Series:
    """Return the benefit type of persons off the roll whose benefit the list terminated.

    Only the list's own terminations (for a death) count: a benefit the agency delivered
    terminated is outside the money path, and its person stays off the roll.
    """
    ended = of_persons(
        session, persons[~persons.isin(on_roll)], Benefit.status == BenefitStatus.TERMINATED,
        Benefit.suspension_reason == ListReason.DECEASED,
    )  # fmt: skip
    first = ended.sort_values("benefit_id").drop_duplicates("person_id")
    return pd.Series(first["benefit_type"].to_numpy(), index=first["person_id"].astype(int))


def _face_passes(session: Session, context: Context, since: pd.Series) -> pd.DataFrame:
    """Return, per person in `since`, their latest passing face verification from that day on.

    Nobody asked these people (a suspended person's reviews are closed, a death record may
    arrive after the pass), but a person whose own face passed after the day their death or
    suspension took effect has proved they are alive; by proxy too where the policy allows.
    """
    if since.empty:
        return proofs_of_life([], [], [], [])
    results = face_results(
        session, store=context.store, first_day=min(since), as_of=context.as_of,
        persons=context.persons,
    )  # fmt: skip
    own = {f"pass_{channel}" for channel in context.policy.own_face_channels}
    passing = own | ({"pass_proxy"} if context.policy.proxy_allowed else set())
    results = results[results["kind"].isin(passing) & results["person_id"].isin(since.index)]
    start = (pd.to_datetime(since.reindex(results["person_id"]).to_numpy()) - pd.Timestamp(
        "1970-01-01"
    )).days  # fmt: skip
    passes = results[results["day"].to_numpy() >= np.asarray(start)]
    last = passes.sort_values(["person_id", "day"]).drop_duplicates("person_id", keep="last")
    return proofs_of_life(
        last["person_id"],
        (CertificationSource.FACE if kind in own else CertificationSource.PROXY
         for kind in last["kind"]),
        (date_of_day(d) for d in last["day"]),
        ({"face_pass": True} for _ in range(len(last))),
    )  # fmt: skip


def _acting_deaths(session: Session, context: Context) -> pd.DataFrame:
    """Return death records that act on someone as of the run: id, person, date, source."""
    as_of = context.as_of
    return read_frame(
        session,
        select(DeathRecord.id, DeathRecord.person_id, DeathRecord.died_on, DeathRecord.source,
               DeathRecord.record_id)
        .where(DeathRecord.status == RecordStatus.ACTIVE, DeathRecord.person_id.is_not(None),
               DeathRecord.match.in_(ACTING), DeathRecord.recorded_on <= as_of,
               DeathRecord.died_on <= as_of, context.in_partition(DeathRecord.person_id)),
        ["id", "person_id", "died_on", "source", "record_id"],
    )  # fmt: skip


def past_proofs(session: Session, persons: list[int]) -> pd.Series:
    """Return, per person, the day of their latest proof of life certified by earlier runs."""
    rows = frame_in(
        session, persons,
        lambda chunk: select(Certification.person_id, Certification.evidence).where(
            Certification.person_id.in_(chunk), Certification.source.in_(PROOF_SOURCES)
        ),
        ["person_id", "evidence"],
    )  # fmt: skip
    days = [(evidence or {}).get("proof_day") for evidence in rows["evidence"]]
    rows = rows.assign(day=days).dropna(subset=["day"])
    if rows.empty:
        return pd.Series(dtype=object)
    return rows.assign(day=rows["day"].map(dt.date.fromisoformat)).groupby("person_id")["day"].max()


def _refute(session: Session, deaths: pd.DataFrame, proofs: pd.DataFrame) -> pd.DataFrame:
    """Refute the death records that a proof of life dated after them contradicts.

    Returns the records that still stand. A proof on the day of death itself refutes
    nothing: the death stands, which never pays anyone dead.
    """
    if deaths.empty:
        return deaths
    latest = proofs.groupby("person_id")["day"].max() if len(proofs) else pd.Series(dtype=object)
    past = past_proofs(session, sorted(set(deaths["person_id"].astype(int))))
    best = pd.concat([latest, past]).groupby(level=0).max()
    proof_day = deaths["person_id"].map(best)
    contradicted = proof_day.notna() & (
        pd.to_datetime(proof_day) > pd.to_datetime(deaths["died_on"])
    )
    refuted = deaths.loc[contradicted.to_numpy(), "id"].astype(int).tolist()
    for start in range(0, len(refuted), IN_CHUNK):
        session.execute(
            update(DeathRecord).where(DeathRecord.id.in_(refuted[start : start + IN_CHUNK]))
            .values(status=RecordStatus.REFUTED)
        )  # fmt: skip
    return deaths.loc[~contradicted.to_numpy()]


def certify(
    session: Session, context: Context, findings: Findings, *, assessed: pd.DataFrame,
    roll: pd.DataFrame, estimate: Estimate, result: WorkflowResult,
    partition_ends: CertificationEnds,
) -> Certified:  # fmt: skip
    """Certify the living on their proofs, the strong silently; return who holds until when.

    Strong is strong tonight, or on a night of the renewal window that no run graded
    (`strongest_moments`), or, where the operator enabled it, likely alive by the learned
    estimator with a trace of the person's own body (`estimator_picks`). Nobody whose own
    traces stopped abruptly (`assessed["stopped"]`) is certified by data.
    `partition_ends`: the certification ends of the context's partition (everyone's for a run
    of everyone), read once before its first partition (`read_ends`, then `between(lo, hi)`);
    they are not kept here but by the run after its last (`Certified.recorded`).
    """
    run_id, as_of, policy = context.run_id, context.as_of, context.policy
    policy_version = context.scoring.version
    proofs = findings.proofs
    proof_of_life = set(proofs["person_id"].astype(int))
    # Read once: after certifying, only what this run recorded is added (`with_run`).
    read = partition_ends
    ends = read.merged_days()
    certify_persons(
        session, run_id=run_id, as_of=as_of, proofs=proofs, policy=policy,
        policy_version=policy_version,
    )  # fmt: skip
    # Only the columns certifying reads: a copy of the whole roll's frame costs memory.
    needed = ["person_id", "benefit_type", "level", "certifiable", "stopped", "reasons", "row"]
    living = assessed.loc[
        ~assessed["person_id"].isin(proof_of_life | findings.dead).to_numpy(),
        [c for c in needed if c in assessed],
    ]
    tonight = (living["level"] == "strong").to_numpy()
    if "certifiable" in living:
        tonight = tonight & living["certifiable"].astype(bool).to_numpy()
    # Not strong tonight and not deceased: perhaps strong on a night between the runs.
    unsure = living[~tonight & (living["level"] != "deceased").to_numpy()]
    if "stopped" in unsure:
        unsure = unsure[~unsure["stopped"].astype(bool).to_numpy()]
    earlier = strongest_moments(
        session, context, candidates=unsure[["person_id", "benefit_type"]], ends=ends,
        scoring=context.scoring,
    )  # fmt: skip
    # Still unsure: perhaps likely alive by the learned estimator, where it is enabled.
    picks = estimator_picks(
        session, context, estimate,
        candidates=unsure.loc[~unsure["person_id"].isin(earlier["person_id"])
                              & (unsure["level"] != "strong"),
                              ["person_id", "benefit_type", "level"]],
        roll=roll, ends=ends,
    )  # fmt: skip
    strong = pd.concat([living[tonight], earlier, picks.strong], ignore_index=True)
    silently = certify_silently(
        session, run_id=run_id, as_of=as_of, strong=strong, policy=policy,
        policy_version=policy_version, ends=ends, explain=context.explain,
    )  # fmt: skip
    result.certified = {
        **{str(k): int(v) for k, v in proofs["source"].astype(str).value_counts().items()},
        str(CertificationSource.DATA_COMPARISON): silently,
    }
    result.certified_earlier_night = len(earlier)
    result.certified_by_estimator = len(picks.strong)
    enabled = context.estimator is not None and context.estimator.certify_enabled
    result.estimator = {**estimate.report(enabled=enabled), **picks.counts}
    session.flush()
    renewed = read.with_run(
        session, run_id=run_id, where=context.in_partition(Certification.person_id)
    )
    days = renewed.merged_days()
    # Only those whose certification now runs past today: each looked up in the ends by
    # position, the roll's ids kept as an array (a set of a million ints costs seconds).
    certified = union_sorted(sorted_ids(proof_of_life), strong["person_id"].to_numpy(np.int64))
    # A rerun of the date counts whom its earlier run certified, as that run did: a proof of
    # life is news once, and the rerun would otherwise flag them afresh (a risk review).
    certified = union_sorted(certified, _certified_earlier_today(session, context))
    certified_now = certified[_running(days, certified, as_of=as_of)]
    return Certified(
        proof_of_life=proof_of_life, ends=days, certified_now=certified_now,
        earlier_night=set(earlier["person_id"].astype(int)),
        by_estimator=set(picks.strong["person_id"].astype(int)), recorded=renewed.recorded,
    )  # fmt: skip
