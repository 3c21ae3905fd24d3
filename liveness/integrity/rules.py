"""Integrity rules: pure functions from frames of the roll, deaths and traces to leads.

Every rule returns a frame of LEAD_COLUMNS, one row per lead: the rule, a key stable across
re-detection (the shared account, the pair of numbers, the dead person), the region that
inspects it, the `person_ref`s involved, the evidence as a JSON-ready dict, and the monthly
amount at risk. Work per trace is vectorised; Python runs once per lead, to shape evidence.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from liveness.evidence.parts import day_from_number
from liveness.integrity.policy import IntegrityPolicy

LEAD_COLUMNS = ["rule", "key", "region_code", "person_refs", "evidence", "amount_at_risk"]
ROLL_COLUMNS = [
    "person_id", "person_ref", "id_number", "name", "sex", "birth_date", "region_code",
    "bank_account", "phone", "monthly_amount", "active",
]  # fmt: skip
TRACE_COLUMNS = ["source", "record_id", "person_id", "day", "kind", "link_key"]
FACE_PASS_COLUMNS = ["record_id", "person_id", "day", "kind", "face_id"]
OUTCOME_COLUMNS = ["task_id", "person_id", "kind", "outcome", "day", "actor", "region"]
_PERSON_FIELDS = ["person_ref", "id_number", "name", "region_code", "monthly_amount"]


def empty_leads() -> pd.DataFrame:
    """Return a lead frame without rows."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in LEAD_COLUMNS})


def _persons(group: pd.DataFrame) -> list[dict[str, Any]]:
    """Describe the persons of one lead, for its evidence."""
    rows = group[_PERSON_FIELDS].astype(object).to_dict("records")
    return [{**row, "monthly_amount": round(float(row["monthly_amount"]), 2)} for row in rows]


def _main_region(regions: pd.Series) -> str:
    """Return the region most persons of a lead belong to (ties: the smallest code)."""
    return str(regions.value_counts().sort_index().idxmax())


def _person_lead(
    rule: str, people: pd.DataFrame, person_id: int, evidence: dict[str, Any], at_risk: float
) -> dict[str, Any]:
    """Return a lead on one person of `people` (the roll by person_id): their ref is its key."""
    person = people.loc[person_id]
    ref = str(person["person_ref"])
    return {
        "rule": rule,
        "key": ref,
        "region_code": str(person["region_code"]),
        "person_refs": [ref],
        "evidence": {**evidence, "persons": _persons(people.loc[[person_id]].reset_index())},
        "amount_at_risk": round(at_risk, 2),
    }


def shared_contact(roll: pd.DataFrame, *, column: str, rule: str, min_persons: int) -> pd.DataFrame:
    """Lead on every bank account or phone shared by `min_persons` or more persons."""
    have = roll.loc[roll[column].notna() & roll[column].astype(str).str.len().gt(0)]
    sizes = have.groupby(column)["person_id"].transform("nunique")
    hit = have.loc[sizes >= min_persons].sort_values([column, "person_ref"])
    leads = [
        {
            "rule": rule,
            "key": str(value),
            "region_code": _main_region(group["region_code"]),
            "person_refs": group["person_ref"].tolist(),
            "evidence": {column: str(value), "persons": _persons(group)},
            "amount_at_risk": round(float(group["monthly_amount"].sum()), 2),
        }
        for value, group in hit.groupby(column, sort=True)
    ]
    return pd.DataFrame(leads, columns=LEAD_COLUMNS) if leads else empty_leads()


def deregistered_number(
    deregistrations: pd.DataFrame, roll: pd.DataFrame, *, policy: IntegrityPolicy
) -> pd.DataFrame:
    """Lead where a cancelled number still draws, or a number's successor draws as well."""
    rule = "deregistered_number"
    by_number = roll.drop_duplicates("id_number").set_index("id_number")["person_id"]
    frame = deregistrations.loc[deregistrations["person_id"].notna()].copy()
    frame["person_id"] = frame["person_id"].astype(np.int64)
    frame["new_person_id"] = frame["new_id_number"].map(by_number)
    active = roll.set_index("person_id")["active"]
    cancelled = frame["reason"].isin(policy.get(rule, "cancelled_reasons")) & frame[
        "person_id"
    ].map(active).fillna(False).astype(bool)
    successor = frame["new_person_id"].notna() & frame["new_person_id"].ne(frame["person_id"])
    if not policy.get(rule, "flag_new_number_on_roll"):
        successor &= False
    hit = frame.loc[cancelled | successor]
    people = roll.set_index("person_id")
    leads = []
    for row in hit.itertuples(index=False):
        ids = [int(row.person_id)]
        if pd.notna(row.new_person_id) and int(row.new_person_id) != int(row.person_id):
            ids.append(int(row.new_person_id))
        group = people.loc[ids].reset_index()
        leads.append(
            {
                "rule": rule,
                "key": str(row.record_id),
                "region_code": str(group["region_code"].iloc[0]),
                "person_refs": group["person_ref"].tolist(),
                "evidence": {
                    "deregistration": str(row.record_id),
                    "reason": str(row.reason),
                    "deregistered_on": str(row.deregistered_on),
                    "id_number": str(row.id_number),
                    "new_id_number": None if pd.isna(row.new_id_number) else str(row.new_id_number),
                    "persons": _persons(group),
                },
                "amount_at_risk": round(float(group["monthly_amount"].iloc[-1]), 2),
            }
        )
    return pd.DataFrame(leads, columns=LEAD_COLUMNS) if leads else empty_leads()


def same_demographics(roll: pd.DataFrame, *, policy: IntegrityPolicy) -> pd.DataFrame:
    """Lead on the same name, sex and birth date under two or more identity numbers."""
    rule = "same_demographics"
    keys = ["name", "sex", "birth_date"]
    if policy.get(rule, "same_region"):
        keys.append("region_code")
    sizes = roll.groupby(keys)["id_number"].transform("nunique")
    hit = roll.loc[sizes >= 2].sort_values([*keys, "id_number"])
    leads = [
        {
            "rule": rule,
            "key": "+".join(sorted(group["id_number"].astype(str))),
            "region_code": _main_region(group["region_code"]),
            "person_refs": group["person_ref"].tolist(),
            "evidence": {
                "name": str(group["name"].iloc[0]),
                "sex": str(group["sex"].iloc[0]),
                "birth_date": str(group["birth_date"].iloc[0]),
                "persons": _persons(group),
            },
            # Only one of the identities is entitled: the others' benefits are at risk.
            "amount_at_risk": round(
                float(group["monthly_amount"].sort_values().iloc[:-1].sum()), 2
            ),
        }
        for _, group in hit.groupby(keys, sort=True)
    ]
    return pd.DataFrame(leads, columns=LEAD_COLUMNS) if leads else empty_leads()


def after_death(
    traces: pd.DataFrame,
    deaths: pd.DataFrame,
    roll: pd.DataFrame,
    *,
    rule: str,
    grace_days: int,
    min_traces: int,
    max_listed: int,
    as_of: dt.date,
) -> pd.DataFrame:
    """Lead on every person with `min_traces` traces after their acting death date.

    `traces` holds TRACE_COLUMNS, already restricted to the kinds that count; `deaths` one row
    per person: person_id, death_day (store day number), sources.
    """
    if traces.empty or deaths.empty:
        return empty_leads()
    merged = traces.merge(deaths, on="person_id", how="inner")
    late = merged.loc[merged["day"] > merged["death_day"] + grace_days]
    counts = late.groupby("person_id")["record_id"].transform("size")
    late = late.loc[counts >= min_traces].sort_values(["person_id", "day", "source", "record_id"])
    people = roll.set_index("person_id")
    leads = []
    for person_id, group in late.groupby("person_id", sort=True):
        person = people.loc[int(person_id)]
        died_on = day_from_number(int(group["death_day"].iloc[0]))
        months = max(1, (as_of.year - died_on.year) * 12 + as_of.month - died_on.month)
        listed = group.head(max_listed)
        evidence = {
            "died_on": died_on.isoformat(),
            "death_sources": str(group["sources"].iloc[0]),
            "traces": len(group),
            "listed": [
                {
                    "source": str(t.source),
                    "record_id": str(t.record_id),
                    "day": day_from_number(int(t.day)).isoformat(),
                    "kind": str(t.kind),
                    "card": None if pd.isna(t.link_key) else str(t.link_key),
                }
                for t in listed.itertuples(index=False)
            ],
        }
        at_risk = float(person["monthly_amount"]) * months
        leads.append(_person_lead(rule, people, int(person_id), evidence, at_risk))
    return pd.DataFrame(leads, columns=LEAD_COLUMNS) if leads else empty_leads()


def counting_traces(traces: pd.DataFrame, *, ignored_kinds: list[str]) -> pd.DataFrame:
    """Drop traces whose `source.kind` is not the person's own act."""
    qualified = traces["source"].astype(str) + "." + traces["kind"].astype(str)
    return traces.loc[~qualified.isin(ignored_kinds).to_numpy()]


def same_face_id(
    passes: pd.DataFrame, roll: pd.DataFrame, *, min_persons: int, max_listed: int
) -> pd.DataFrame:
    """Lead on every face template that passed for `min_persons` or more distinct persons.

    `passes` holds FACE_PASS_COLUMNS: passing face results within the window, each naming a
    `face_id` and linked to a person.
    """
    rule = "same_face_id"
    if passes.empty:
        return empty_leads()
    sizes = passes.groupby("face_id")["person_id"].transform("nunique")
    hit = passes.loc[sizes >= min_persons].merge(
        roll[["person_id", "person_ref"]], on="person_id", how="inner"
    )
    hit = hit.sort_values(["face_id", "day", "person_ref", "record_id"])
    people = roll.set_index("person_id")
    leads = []
    for face_id, group in hit.groupby("face_id", sort=True):
        persons = people.loc[group["person_id"].unique()].reset_index().sort_values("person_ref")
        leads.append(
            {
                "rule": rule,
                "key": str(face_id),
                "region_code": _main_region(persons["region_code"]),
                "person_refs": persons["person_ref"].tolist(),
                "evidence": {
                    "face_id": str(face_id),
                    "verifications": len(group),
                    "listed": [
                        {
                            "record_id": str(v.record_id),
                            "person_ref": str(v.person_ref),
                            "day": day_from_number(int(v.day)).isoformat(),
                            "kind": str(v.kind),
                        }
                        for v in group.head(max_listed).itertuples(index=False)
                    ],
                    "persons": _persons(persons),
                },
                # Which identity is the face's own is for the inspector: all of them are at risk.
                "amount_at_risk": round(float(persons["monthly_amount"].sum()), 2),
            }
        )
    return pd.DataFrame(leads, columns=LEAD_COLUMNS) if leads else empty_leads()


# Long by design: one rule as a frame pipeline: place, pair, find conflicts, write leads.
def two_region_certification(
    outcomes: pd.DataFrame, roll: pd.DataFrame, *, max_listed: int
) -> pd.DataFrame:
    """Lead on every person whose review outcomes in the window place them in two regions.

    `outcomes` holds OUTCOME_COLUMNS, already restricted to the window and to outcomes that
    place someone. An `alive_confirmed` places the person in their roll region, a `moved_away`
    in the region it names. A `moved_away` conflicts with any outcome of the same day or later
    placing the person elsewhere; an earlier visit at home followed by a move is just a move.
    """
    rule = "two_region_certification"
    if outcomes.empty:
        return empty_leads()
    frame = outcomes.merge(roll[["person_id", "person_ref", "region_code"]], on="person_id")
    frame["placed_in"] = frame["region"].where(
        frame["outcome"].eq("moved_away"), frame["region_code"]
    )
    frame = frame.loc[frame["placed_in"].notna()]
    # Only persons placed in two regions can conflict: the pairing below stays small.
    regions = frame.groupby("person_id")["placed_in"].transform("nunique")
    frame = frame.loc[regions >= 2]
    moves = frame.loc[frame["outcome"].eq("moved_away")]
    pairs = moves.merge(frame, on="person_id", suffixes=("", "_later"))
    conflict = (
        pairs["task_id"].ne(pairs["task_id_later"])
        & pairs["day_later"].ge(pairs["day"])
        & pairs["placed_in_later"].ne(pairs["placed_in"])
    )
    pairs = pairs.loc[conflict]
    involved = pd.concat(
        [pairs[["person_id", "task_id"]], pairs[["person_id", "task_id_later"]].set_axis(
            ["person_id", "task_id"], axis=1)]
    ).drop_duplicates()  # fmt: skip
    listed = frame.merge(involved, on=["person_id", "task_id"]).sort_values(
        ["person_id", "day", "task_id"]
    )
    people = roll.set_index("person_id")
    leads = []
    for person_id, group in listed.groupby("person_id", sort=True):
        person = people.loc[int(person_id)]
        evidence = {
            "roll_region": str(person["region_code"]),
            "regions": sorted(group["placed_in"].astype(str).unique().tolist()),
            "conflicting": len(group),
            "outcomes": [
                {
                    "task_id": int(o.task_id),
                    "kind": str(o.kind),
                    "outcome": str(o.outcome),
                    "on": day_from_number(int(o.day)).isoformat(),
                    "by": None if pd.isna(o.actor) else str(o.actor),
                    "region": str(o.placed_in),
                }
                for o in group.head(max_listed).itertuples(index=False)
            ],
        }
        at_risk = float(person["monthly_amount"])
        leads.append(_person_lead(rule, people, int(person_id), evidence, at_risk))
    return pd.DataFrame(leads, columns=LEAD_COLUMNS) if leads else empty_leads()
