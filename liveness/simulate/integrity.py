"""Plant integrity patterns into an already-simulated city folder, and return their truth.

Planted: persons sharing one bank account and one phone (extra registry rows), one person
under two numbers (same name, sex and birth date), a number deregistered with its successor
also drawing, a cancelled duplicate number still drawing, a face pass after a recorded death,
and one face template passing for a person and for a second identity (another name, another
number). Card use after death is planted by the simulator itself (truth
`card_used_after_death`). Review outcomes placing a person in two regions exist only in the
database: `plant_integrity` chooses them, `record_planted_outcomes` records them once the city
is ingested.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from liveness.errors import LivenessError
from liveness.review.outcomes import record_outcome
from liveness.simulate.deliveries import write_csv
from liveness.simulate.identity import compose_id17, full_id_numbers
from models import Person, ReviewTask, TaskKind, TaskStatus

SHARED_GROUP = 3  # persons on one account (and on one phone): the host and two extra rows
FACE_DELAY_DAYS = 5
HOSTS = 9  # clean living persons the patterns are planted on, one or two per rule


class CityTooSmall(LivenessError):
    """The simulated city holds too few clean persons or deaths to plant the patterns on."""

    exit_code = 15


SHARED_FACE_ID = "FTplantedshared1"
PLANTED = "planted"  # the key, in a planted review task's reasons, of the rule it plants for


@dataclass(frozen=True)
class PlantedIntegrity:
    """Planted findings per rule: each a group of `person_ref`s that one lead should name.

    `also_expected` lists, per rule, persons a correct rule may also flag though nothing was
    planted for fraud (someone wrongly reported dead keeps living: activity after a "death").
    """

    groups: dict[str, list[list[str]]]
    also_expected: dict[str, list[str]] = field(default_factory=dict)
    # Review outcomes to record once ingested: person_ref, outcome, region, days before as-of.
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def persons(self, rule: str) -> set[str]:
        """Return every person planted for `rule`."""
        return {ref for group in self.groups.get(rule, []) for ref in group}


def _last_day(out: Path) -> dt.date:
    """Return the last simulated day, from the daily transit files' names."""
    names = sorted(p.stem.rsplit("_", 1)[-1] for p in (out / "transit").glob("transit_*.csv"))
    return dt.datetime.strptime(names[-1], "%Y%m%d").date()


def _new_id(
    rng: np.random.Generator, *, region: str, birth: str, male: bool, taken: set[str]
) -> str:
    """Return a valid identity number not in `taken` (and add it)."""
    while True:
        seq = int(rng.integers(1, 499)) * 2 + int(male)
        body = compose_id17(
            region=np.array([int(region)]), birth_ymd=np.array([int(birth)]), seq=np.array([seq])
        )
        number = str(full_id_numbers(body)[0])
        if number not in taken:
            taken.add(number)
            return number


# Long by design: one recipe per planted pattern, all checked before any is written.
def plant_integrity(out: Path, *, seed: int = 11) -> PlantedIntegrity:
    """Append the integrity patterns to the city under `out` and return what was planted."""
    rng = np.random.default_rng(seed)
    registry_path = out / "registry" / "registry.csv"
    registry = pd.read_csv(registry_path, dtype=str, keep_default_na=False)
    truth = pd.read_csv(out / "truth.csv", dtype=str, keep_default_na=False)
    anomalies = json.loads((out / "anomalies.json").read_text(encoding="utf-8"))
    last = _last_day(out)
    taken = set(registry["id_number"])
    # Hosts are clean, living persons, so that each planted lead is about the plant alone.
    touched = {d["person_ref"] for d in anomalies.get("other_deregistrations", [])}
    living = truth.loc[truth["died_on"].eq("") & ~truth["person_ref"].isin(touched), "person_ref"]
    clean = registry.loc[
        registry["person_ref"].isin(living)
        & registry["status"].eq("active")
        & registry["bank_account"].ne("")
        & registry["phone"].ne("")
    ]
    if len(clean) < HOSTS + SHARED_GROUP * 2:
        raise CityTooSmall(
            f"the city holds {len(clean):,} clean living persons; the integrity patterns need "
            f"{HOSTS + SHARED_GROUP * 2:,}"
        )
    # Everything is checked before anything is written: a plant is whole or absent.
    unusable = set(anomalies.get("cremation_blank_id", [])) | set(
        anomalies.get("cremation_wrong_id", [])
    )
    died = pd.to_datetime(truth["died_on"], errors="coerce")
    dead = truth.loc[
        truth["death_record"].isin(["cremation", "both"])
        & ~truth["person_ref"].isin(unusable)
        & truth["card_used_after_death"].eq("false")
        & truth["wrongly_reported_dead"].eq("false")
        & (died <= pd.Timestamp(last - dt.timedelta(days=FACE_DELAY_DAYS + 1)))
    ]
    if len(dead) < 2:
        raise CityTooSmall(
            f"the city holds {len(dead):,} deaths old enough and on record; the integrity "
            "patterns need 2"
        )
    hosts = clean.sample(n=HOSTS, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    donors = clean.loc[~clean["person_ref"].isin(hosts["person_ref"])]
    serial = iter(range(1, 1000))
    extra: list[dict[str, str]] = []

    def add_row(*, like: pd.Series, region_of: pd.Series, same_person: bool) -> dict[str, str]:
        row = {**like.to_dict(), "person_ref": f"P9{next(serial):06d}"}
        row["region_code"], row["grid_code"] = region_of["region_code"], region_of["grid_code"]
        birth = dt.date.fromisoformat(like["birth_date"])
        if not same_person:
            # Another birth date: the extra person must not also look like the donor twice.
            birth += dt.timedelta(days=int(rng.integers(30, 300)))
            row["birth_date"] = birth.isoformat()
        row["id_number"] = _new_id(
            rng, region=row["region_code"], birth=birth.strftime("%Y%m%d"),
            male=like["sex"] == "M", taken=taken,
        )  # fmt: skip
        extra.append(row)
        return row

    groups: dict[str, list[list[str]]] = {}
    for rule, column, host in (
        ("shared_bank_account", "bank_account", hosts.iloc[0]),
        ("shared_phone", "phone", hosts.iloc[1]),
    ):
        refs = [str(host["person_ref"])]
        for _ in range(SHARED_GROUP - 1):
            donor = donors.sample(n=1, random_state=int(rng.integers(2**31))).iloc[0]
            row = add_row(like=donor, region_of=host, same_person=False)
            row[column] = host[column]
            # Each extra row has its own other contact, so it joins exactly one group.
            other = "phone" if column == "bank_account" else "bank_account"
            row[other] = (
                f"{'6228' if other == 'bank_account' else '139'}{rng.integers(10**8, 10**9)}"
            )
            refs.append(row["person_ref"])
        groups[rule] = [refs]

    twin = add_row(like=hosts.iloc[2], region_of=hosts.iloc[2], same_person=True)
    moved = add_row(like=hosts.iloc[3], region_of=hosts.iloc[3], same_person=True)
    for row in (twin, moved):
        row["bank_account"] = f"6228{rng.integers(10**14, 10**15)}"
        row["phone"] = ""
    groups["same_demographics"] = [
        [str(hosts.iloc[2]["person_ref"]), twin["person_ref"]],
        [str(hosts.iloc[3]["person_ref"]), moved["person_ref"]],
    ]
    spare = _new_id(
        rng, region=str(hosts.iloc[4]["region_code"]), birth=hosts.iloc[4]["birth_date"].replace(
            "-", ""), male=hosts.iloc[4]["sex"] == "M", taken=taken,
    )  # fmt: skip
    deregistered_on = (last - dt.timedelta(days=10)).isoformat()
    deregistrations = pa.table(
        {
            "record_id": ["DP0000001", "DP0000002"],
            "id_number": [hosts.iloc[3]["id_number"], hosts.iloc[4]["id_number"]],
            "name": [hosts.iloc[3]["name"], hosts.iloc[4]["name"]],
            "deregistered_on": [deregistered_on, deregistered_on],
            "reason": ["moved_out", "duplicate"],
            "died_on": pa.nulls(2, pa.string()),
            "new_id_number": [moved["id_number"], spare],
        }
    )
    write_csv(out / "deregistration" / "deregistration_planted.csv", deregistrations)
    groups["deregistered_number"] = [
        [str(hosts.iloc[3]["person_ref"]), moved["person_ref"]],
        [str(hosts.iloc[4]["person_ref"])],
    ]
    # One face, two identities: the host's face passes under a second number with another
    # name and birth date, so that only the face ties the two together.
    donor = donors.sample(n=1, random_state=int(rng.integers(2**31))).iloc[0]
    alias = add_row(like=donor, region_of=hosts.iloc[5], same_person=False)
    alias["bank_account"] = f"6228{rng.integers(10**14, 10**15)}"
    alias["phone"] = ""
    groups["same_face_id"] = [[str(hosts.iloc[5]["person_ref"]), alias["person_ref"]]]
    registry = pd.concat([registry, pd.DataFrame(extra)], ignore_index=True)
    write_csv(registry_path, pa.Table.from_pandas(registry, preserve_index=False))

    victim, rider = (
        row for _, row in dead.sample(n=2, random_state=int(rng.integers(2**31))).iterrows()
    )
    verified = dt.date.fromisoformat(victim["died_on"]) + dt.timedelta(days=FACE_DELAY_DAYS)
    shared_on = [last - dt.timedelta(days=20), last - dt.timedelta(days=12)]
    face = pa.table(
        {
            "record_id": ["VP00000001", "VP00000002", "VP00000003"],
            "id_number": [victim["id_number"], hosts.iloc[5]["id_number"], alias["id_number"]],
            "verified_at": [
                f"{verified.isoformat()} 02:30:00",
                *(f"{day.isoformat()} 09:15:00" for day in shared_on),
            ],
            "result": ["pass", "pass", "pass"],
            "channel": ["app", "kiosk", "app"],
            "score": ["0.950", "0.970", "0.940"],
            "request_id": pa.nulls(3, pa.string()),
            "face_id": ["FTplanted0000001", SHARED_FACE_ID, SHARED_FACE_ID],
        }
    )
    write_csv(out / "face" / "face_planted.csv", face)
    groups["face_pass_after_death"] = [[str(victim["person_ref"])]]
    cards = pd.read_csv(out / "cards" / "cards.csv", dtype=str, keep_default_na=False)
    card = cards.loc[cards["id_number"].eq(rider["id_number"]), "card_no"].sort_values().iloc[0]
    tapped = dt.date.fromisoformat(rider["died_on"]) + dt.timedelta(days=FACE_DELAY_DAYS)
    transit = pa.table(
        {
            "record_id": ["TP00000001"],
            "card_no": [card],
            "tapped_at": [f"{tapped.isoformat()} 02:10:00"],
            "city_code": [rider["region_code"]],
            "mode": ["bus"],
            "line": ["1路"],
            "station": ["ST0001"],
            "face_match": pa.nulls(1, pa.string()),
        }
    )
    write_csv(out / "transit" / "transit_planted.csv", transit)
    # The simulator's own post-death card use is findable only where the death was recorded
    # (or the civil registry notified it, within a day).
    notified = truth.get("registry_notice", pd.Series("false", index=truth.index)).eq("true")
    recorded = (
        truth["death_record"].isin(["cremation", "both", "death_record"]) | notified
    ) & ~truth["person_ref"].isin(unusable)
    used = truth.loc[truth["card_used_after_death"].eq("true") & recorded, "person_ref"]
    groups["activity_after_death"] = [[str(rider["person_ref"])], *([ref] for ref in used)]
    # Two regions at once: a move to another region, then seen alive at home; two moves to
    # different regions. The third person moved after a visit at home: a move, no conflict.
    regions = sorted(set(registry["region_code"]))
    elsewhere = [
        [r for r in regions if r != hosts.iloc[i]["region_code"]][:2] for i in (6, 7, 8)
    ]  # fmt: skip
    refs = [str(hosts.iloc[i]["person_ref"]) for i in (6, 7, 8)]
    outcomes = [
        {"person_ref": refs[0], "outcome": "moved_away", "region": elsewhere[0][0], "before": 40},
        {"person_ref": refs[0], "outcome": "alive_confirmed", "region": None, "before": 10},
        {"person_ref": refs[1], "outcome": "moved_away", "region": elsewhere[1][0], "before": 50},
        {"person_ref": refs[1], "outcome": "moved_away", "region": elsewhere[1][1], "before": 15},
        {"person_ref": refs[2], "outcome": "alive_confirmed", "region": None, "before": 45},
        {"person_ref": refs[2], "outcome": "moved_away", "region": elsewhere[2][0], "before": 20},
    ]
    groups["two_region_certification"] = [[refs[0]], [refs[1]]]
    wrongly = truth.loc[truth["wrongly_reported_dead"].eq("true"), "person_ref"].tolist()
    planted = PlantedIntegrity(
        groups=groups,
        also_expected={"activity_after_death": wrongly, "face_pass_after_death": wrongly},
        outcomes=outcomes,
    )
    (out / "integrity_truth.json").write_text(
        json.dumps(
            {
                "groups": planted.groups, "also_expected": planted.also_expected,
                "outcomes": planted.outcomes,
            },
            ensure_ascii=False, indent=2, sort_keys=True,
        ) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    return planted


def record_planted_outcomes(session: Session, *, planted: PlantedIntegrity, as_of: dt.date) -> int:
    """Record the planted review outcomes as home visits done before `as_of`; return how many.

    Recording again adds nothing: a person's planted visits are recognised by their reasons.
    """
    refs = sorted({str(o["person_ref"]) for o in planted.outcomes})
    persons = {p.person_ref: p for p in session.scalars(select(Person).where(
        Person.person_ref.in_(refs)))}  # fmt: skip
    done = {
        task.person_id
        for task in session.scalars(
            select(ReviewTask).where(ReviewTask.person_id.in_([p.id for p in persons.values()]))
        )
        if PLANTED in task.reasons
    }
    recorded = 0
    for planned in planted.outcomes:
        person = persons[str(planned["person_ref"])]
        if person.id in done:
            continue
        on = as_of - dt.timedelta(days=int(planned["before"]))
        task = ReviewTask(
            person_id=person.id, kind=TaskKind.HOME_VISIT, status=TaskStatus.OPEN,
            grid_code=person.grid_code, priority=0.0, opened_on=on - dt.timedelta(days=7),
            due_on=on + dt.timedelta(days=14), reasons={PLANTED: "two_region_certification"},
        )  # fmt: skip
        session.add(task)
        session.flush()
        record_outcome(
            session, task_id=task.id, outcome=str(planned["outcome"]),
            actor=f"grid:{person.grid_code}", on=on, region=planned["region"],
        )  # fmt: skip
        recorded += 1
    return recorded
