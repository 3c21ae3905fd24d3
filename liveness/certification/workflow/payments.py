"""Gather each benefit's events of a run and fold them through the payment state machine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from liveness.arrays import union_sorted
from liveness.certification.workflow.context import Context, WorkflowResult
from liveness.certification.workflow.duplicates import duplicate_benefits, open_duplicate_leads
from liveness.certification.workflow.frames import benefits, frame_in, of_persons, sorted_ids
from liveness.certification.workflow.lapses import find_lapses
from liveness.certification.workflow.proofs import Certified, Findings
from liveness.certification.workflow.settle import Settled
from liveness.lists import Occurrence, RunTerms, apply_occurrences, reorder_entries
from liveness.review.outcomes import REVIEW_DEATH_SOURCE
from models import (
    Benefit,
    BenefitStatus,
    ListAction,
    ListEntry,
    ListReason,
    PaymentEvent,
    Run,
    VisitOutcome,
)

# The order in which a benefit's events of one run apply.
EVENT_ORDER = (
    PaymentEvent.DEATH, PaymentEvent.PROOF_OF_LIFE, PaymentEvent.DEATH_WITHDRAWN,
    PaymentEvent.RECERTIFIED, PaymentEvent.IMPRISONMENT, PaymentEvent.DUPLICATE_WITHDRAWN,
    PaymentEvent.DUPLICATE_IDENTITY, PaymentEvent.LAPSE, PaymentEvent.DEATH_STOOD,
)  # fmt: skip


class PaymentFolding:
    """A run's payment events folded partition by partition, the list put in order once.

    Duplicate identities pair persons across partitions: they are found once, before the
    first partition, and each event goes to the partition of the benefit's owner. Each
    partition appends its entries as it folds (its lapses and deaths that stood weigh the
    states its other events left); `finish` then gives the run's entries the order one run
    gives them (every benefit's events in benefit-id order, then every lapse and death that
    stood) and opens the integrity leads of the duplicates in that order.
    """

    def __init__(self, session: Session) -> None:
        self.duplicates = duplicate_benefits(session)
        # The sequence numbers of each phase's entries, with their benefits, as appended.
        self._appended: list[tuple[int, int, int]] = []

    def fold(
        self, session: Session, context: Context, settled: Settled, findings: Findings,
        certified: Certified, *, levels: pd.DataFrame, result: WorkflowResult,
    ) -> None:  # fmt: skip
        """Fold the events of the benefits of the context's partition; append their entries."""
        policy = context.policy
        terms = RunTerms(
            as_of=context.as_of, payment_day=policy.payment_day,
            four_eyes_back_pay=Decimal(str(policy.four_eyes_back_pay)),
            terminate_after_death_days=policy.terminate_after_death_days,
        )  # fmt: skip
        duplicates = self.duplicates
        if context.persons is not None:
            owners = duplicates["person_id"].to_numpy(dtype=np.int64)
            duplicates = duplicates[(owners >= context.persons[0]) & (owners < context.persons[1])]
        events = _events(
            session, context, dead=findings.died_on, standing=findings.standing,
            proofs=findings.proofs, certified_now=certified.certified_now,
            outcomes=settled.outcomes, ends=certified.ends, duplicates=duplicates,
        )  # fmt: skip
        entries = apply_occurrences(session, run_id=context.run_id, run=terms, occurrences=events)
        later = _events_after(
            session, context, dead=findings.died_on, ends=certified.ends, assessed=levels,
            certified_now=certified.certified_now, result=result,
        )  # fmt: skip
        entries_after = apply_occurrences(
            session, run_id=context.run_id, run=terms, occurrences=later
        )
        for phase, appended in enumerate((entries, entries_after)):
            self._appended += [(phase, e["benefit_id"], e["seq"]) for e in appended]
        result.entries = entries + entries_after
        result.events = {
            str(event): sum(
                o.event == event
                for found in (events, later) for each in found.values() for o in each
            )
            for event in EVENT_ORDER
        }  # fmt: skip

    def finish(self, session: Session, context: Context, *, result: WorkflowResult) -> None:
        """Put the run's entries in the list's order; open the duplicates' integrity leads.

        `result` holds every partition's entries (`WorkflowResult.add`); they are put in
        that order too.
        """
        order = sorted(self._appended)
        placed = sorted(seq for _, _, seq in order)
        moved = {old: new for (_, _, old), new in zip(order, placed, strict=True) if old != new}
        if moved:
            reorder_entries(session, run_id=context.run_id, moved=moved)
            for entry in result.entries:
                entry["seq"] = moved.get(entry["seq"], entry["seq"])
        result.entries.sort(key=lambda entry: entry["seq"])
        open_duplicate_leads(session, context, entries=result.entries)


class _Found:
    """Each benefit's events of a run as they are gathered, at most one of each kind."""

    def __init__(self) -> None:
        self.events: dict[int, dict[PaymentEvent, Occurrence]] = {}

    def add(self, benefits: pd.DataFrame, occurrence_of: Callable[[int, int], Occurrence]) -> None:
        """Add the occurrence `occurrence_of(person_id, benefit_id)` of each benefit."""
        for benefit_id, person_id in zip(benefits["benefit_id"], benefits["person_id"],
                                         strict=True):  # fmt: skip
            occurrence = occurrence_of(int(person_id), int(benefit_id))
            self.events.setdefault(int(benefit_id), {})[occurrence.event] = occurrence

    def ordered(self) -> dict[int, list[Occurrence]]:
        """Return each benefit's events in the order they apply."""
        return {
            benefit_id: [events[e] for e in EVENT_ORDER if e in events]
            for benefit_id, events in self.events.items()
        }


def _events(
    session: Session, context: Context, *, dead: pd.Series, standing: pd.DataFrame,
    proofs: pd.DataFrame, certified_now: npt.NDArray[np.int64], outcomes: pd.DataFrame,
    ends: pd.Series, duplicates: pd.DataFrame,
) -> dict[int, list[Occurrence]]:  # fmt: skip
    """Gather each benefit's events of this run but lapses and deaths that stood.

    `duplicates` are the duplicate identities of the partition's benefits (`duplicate_benefits`).
    """
    found = _Found()
    reviewers = dict(zip(outcomes["person_id"], outcomes["actor"], strict=True))
    _add_deaths_and_proofs(
        session, context, found, dead=dead, standing=standing, proofs=proofs, reviewers=reviewers
    )
    _add_recertified_and_imprisoned(
        session, context, found, certified_now=certified_now, outcomes=outcomes, ends=ends,
        reviewers=reviewers,
    )  # fmt: skip
    _add_duplicates(session, context, found, duplicates=duplicates)
    return found.ordered()


def _add_deaths_and_proofs(
    session: Session, context: Context, found: _Found, *, dead: pd.Series, standing: pd.DataFrame,
    proofs: pd.DataFrame, reviewers: dict[Any, Any],
) -> None:  # fmt: skip
    """Add the deaths, the proofs of life and the deaths withdrawn to the benefits they touch."""
    # A death is news to a benefit not already stopped for one, and to any holding a
    # reinstatement (terminated ones too): the death supersedes what waits for approval.
    not_over = (or_(Benefit.held_entry_id.is_not(None),
                    and_(Benefit.status != BenefitStatus.TERMINATED,
                         or_(Benefit.suspension_reason.is_(None),
                             Benefit.suspension_reason != ListReason.DECEASED))),)  # fmt: skip
    # Deaths: the earliest standing record, from whatever source (a review's too).
    first = (
        standing.sort_values(["died_on", "id"]).drop_duplicates("person_id").set_index("person_id")
    )
    found.add(
        of_persons(session, dead.index, *not_over),
        lambda p, b: Occurrence(
            PaymentEvent.DEATH, day=first.at[p, "died_on"],
            evidence={"source": str(first.at[p, "source"]),
                      "record_id": str(first.at[p, "record_id"])},
            caused_by=reviewers.get(p, "system")
            if first.at[p, "source"] == REVIEW_DEATH_SOURCE else "system",
        ),
    )  # fmt: skip
    # Death suspensions whose date of death is no longer the earliest standing one (a record
    # corrected to another date, or an earlier record arrived): redated, overpayment anew.
    redated = _redated(session, first["died_on"])
    found.add(
        redated,
        lambda p, b: Occurrence(
            PaymentEvent.DEATH, day=first.at[p, "died_on"],
            evidence={"source": str(first.at[p, "source"]),
                      "record_id": str(first.at[p, "record_id"])},
        ),
    )  # fmt: skip
    # Proofs of life of suspended or ended benefits.
    proof = proofs.set_index("person_id")
    found.add(
        of_persons(session, proof.index, Benefit.status != BenefitStatus.ACTIVE),
        lambda p, b: Occurrence(
            PaymentEvent.PROOF_OF_LIFE, day=proof.at[p, "day"],
            evidence={"proof": str(proof.at[p, "source"]), "proof_day":
                      proof.at[p, "day"].isoformat(), **proof.at[p, "evidence"]},
            caused_by=reviewers.get(p, "system"),
        ),
    )  # fmt: skip
    # Deaths no record holds any more, with no proof of life this run: withdrawn by source.
    gone = benefits(
        session, Benefit.suspension_reason == ListReason.DECEASED,
        context.in_partition(Benefit.person_id),
    )  # fmt: skip
    gone = gone[~gone["person_id"].isin(dead.index) & ~gone["person_id"].isin(proof.index)]
    found.add(gone, lambda p, b: Occurrence(PaymentEvent.DEATH_WITHDRAWN,
                                            evidence={"no_death_stands": True}))  # fmt: skip


def _redated(session: Session, died_on: pd.Series) -> pd.DataFrame:
    """Return the death suspensions of `died_on`'s persons that began on another day."""
    suspended = frame_in(
        session, sorted_ids(died_on.index),
        lambda chunk: select(Benefit.id, Benefit.person_id, Benefit.suspended_from).where(
            Benefit.person_id.in_(chunk), Benefit.status == BenefitStatus.SUSPENDED,
            Benefit.suspension_reason == ListReason.DECEASED, Benefit.held_entry_id.is_(None),
        ),
        ["benefit_id", "person_id", "suspended_from"],
    )  # fmt: skip
    if suspended.empty:
        return suspended
    begins = pd.to_datetime(suspended["person_id"].map(died_on)) + pd.Timedelta(days=1)
    return suspended[begins.to_numpy() != pd.to_datetime(suspended["suspended_from"]).to_numpy()]


def _add_recertified_and_imprisoned(
    session: Session, context: Context, found: _Found, *, certified_now: npt.NDArray[np.int64],
    outcomes: pd.DataFrame, ends: pd.Series, reviewers: dict[Any, Any],
) -> None:  # fmt: skip
    """Add the lapses a renewed certification ends and the imprisonments reviews found."""
    # Those certified are most of the roll, the lapsed few: read the lapsed, keep the certified.
    lapsed = benefits(
        session, Benefit.suspension_reason == ListReason.LAPSED,
        context.in_partition(Benefit.person_id),
    )  # fmt: skip
    found.add(
        lapsed[lapsed["person_id"].isin(certified_now)],
        lambda p, b: Occurrence(PaymentEvent.RECERTIFIED,
                                evidence={"certified_until": ends[p].date().isoformat()}),
    )  # fmt: skip
    prison = outcomes[outcomes["outcome"] == str(VisitOutcome.IMPRISONED)]
    prison_task = dict(zip(prison["person_id"], prison["id"], strict=True))
    found.add(
        of_persons(session, prison_task,
                   Benefit.benefit_type.in_(context.policy.suspend_when_imprisoned)),
        lambda p, b: Occurrence(PaymentEvent.IMPRISONMENT,
                                evidence={"review_task": int(prison_task[p])},
                                caused_by=reviewers.get(p, "system")),
    )  # fmt: skip


def _add_duplicates(
    session: Session, context: Context, found: _Found, *, duplicates: pd.DataFrame
) -> None:
    """Add the duplicate identities deregistrations show, and those none holds any more."""
    # A duplicate suspension no deregistration holds any more, also under a death it amended
    # (were that death withdrawn later, it would otherwise return to a withdrawn duplicate).
    withdrawn = benefits(
        session,
        or_(Benefit.suspension_reason == ListReason.DUPLICATE_IDENTITY,
            Benefit.prior_reason == ListReason.DUPLICATE_IDENTITY),
        context.in_partition(Benefit.person_id),
    )  # fmt: skip
    withdrawn = withdrawn[~withdrawn["benefit_id"].isin(duplicates.index)]
    found.add(
        withdrawn,
        lambda p, b: Occurrence(PaymentEvent.DUPLICATE_WITHDRAWN,
                                evidence={"no_deregistration_stands": True}),
    )  # fmt: skip
    found.add(
        duplicates.reset_index(),
        lambda p, b: Occurrence(PaymentEvent.DUPLICATE_IDENTITY,
                                evidence=duplicates.at[b, "evidence"]),
    )  # fmt: skip


def _events_after(
    session: Session, context: Context, *, dead: pd.Series, ends: pd.Series,
    assessed: pd.DataFrame, certified_now: npt.NDArray[np.int64], result: WorkflowResult,
) -> dict[int, list[Occurrence]]:  # fmt: skip
    """Gather lapses and deaths that stood, on the states the run's other events left."""
    found = _Found()
    lapses = find_lapses(session, context, ends=ends, assessed=assessed,
                         certified_now=union_sorted(certified_now, sorted_ids(dead.index)),
                         result=result)  # fmt: skip
    found.add(
        of_persons(session, lapses, Benefit.status == BenefitStatus.ACTIVE),
        lambda p, b: Occurrence(PaymentEvent.LAPSE, evidence=lapses[p]),
    )  # fmt: skip
    stood = context.as_of - dt.timedelta(days=context.policy.terminate_after_death_days)
    candidates = of_persons(
        session, dead.index, Benefit.status == BenefitStatus.SUSPENDED,
        Benefit.suspension_reason == ListReason.DECEASED, Benefit.held_entry_id.is_(None),
        Benefit.suspended_as_of <= stood,
    )  # fmt: skip
    found_on = _death_found_on(session, candidates["benefit_id"])
    found.add(
        candidates[candidates["benefit_id"].isin(found_on.index)],
        lambda p, b: Occurrence(PaymentEvent.DEATH_STOOD, day=found_on[b]),
    )  # fmt: skip
    return found.ordered()


def _death_found_on(session: Session, benefit_ids: Iterable[int]) -> pd.Series:
    """Return, per benefit, the date of the run whose entry last suspended it for a death."""
    rows = frame_in(
        session, benefit_ids,
        lambda chunk: select(ListEntry.benefit_id, ListEntry.seq, Run.as_of)
        .join(Run, Run.id == ListEntry.run_id)
        .where(ListEntry.benefit_id.in_(chunk), ListEntry.reason == ListReason.DECEASED,
               ListEntry.action.in_([ListAction.SUSPEND, ListAction.AMEND])),
        ["benefit_id", "seq", "as_of"],
    )  # fmt: skip
    latest = rows.sort_values("seq").drop_duplicates("benefit_id", keep="last")
    return pd.Series(latest["as_of"].to_numpy(), index=latest["benefit_id"].astype(int))
