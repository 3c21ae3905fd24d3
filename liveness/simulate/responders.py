"""Simulated people, grid workers and the verification service answering the engine's reviews.

Between two runs of a simulated city, the people asked for a face verification answer (or
not), as the verification service would deliver their results, and grid workers record what
they found on the visits planned for a week that has begun (the run's plan within each grid's
capacity), both from the simulation's truth.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select

from liveness.access.gateways import mark_notice_sent
from liveness.db import session_scope
from liveness.ingest.runner import ingest_paths
from liveness.review.outcomes import record_outcome
from liveness.services import Services
from models import Notice, NoticeStatus, Person, ReviewTask, TaskKind, TaskStatus

# Who answers a face verification request, by profile: bedridden people rarely manage alone.
ANSWER_RATE = {
    "active_urban": 0.9, "moderate": 0.85, "rural_no_transit": 0.7, "bedridden": 0.3,
    "out_of_province": 0.8,
}  # fmt: skip
PROXY_RATE = {"bedridden": 0.6, "rural_no_transit": 0.2}
NOT_FOUND_RATE = 0.05


@dataclass(frozen=True)
class Answers:
    """What the simulated people, grid workers and messaging gateway did before one run."""

    face_results: int
    visits: int
    notices_sent: int = 0


def send_notices(services: Services, *, by: dt.date) -> int:
    """Send the pending notices created before `by`, the day after each was queued."""
    with session_scope(services.sessions) as session:
        pending = session.execute(
            select(Notice.id, Notice.created_on).where(
                Notice.status == NoticeStatus.PENDING, Notice.created_on < by
            )
        ).all()
        for notice_id, created_on in pending:
            sent_on = min(created_on + dt.timedelta(days=1), by)
            mark_notice_sent(
                session, notice_id=notice_id,
                sent_at=dt.datetime.combine(sent_on, dt.time(1), tzinfo=dt.UTC),
            )  # fmt: skip
    return len(pending)


def _open_tasks(services: Services) -> pd.DataFrame:
    with session_scope(services.sessions) as session:
        rows = session.execute(
            select(
                ReviewTask.id,
                ReviewTask.kind,
                ReviewTask.grid_code,
                ReviewTask.planned_week,
                Person.person_ref,
                Person.id_number,
            )
            .join(Person, Person.id == ReviewTask.person_id)
            .where(ReviewTask.status.in_([TaskStatus.OPEN, TaskStatus.CLAIMED]))
            .order_by(ReviewTask.id)
        ).all()
    frame = pd.DataFrame(
        rows, columns=["id", "kind", "grid_code", "planned_week", "person_ref", "id_number"]
    )
    frame["kind"] = frame["kind"].astype(object).map(str)
    return frame


def answer_reviews(
    services: Services, *, truth: pd.DataFrame, on: dt.date, seed: int, inbox: Path
) -> Answers:
    """Answer the open reviews as the simulated city would, by `on`; send the notices."""
    notices_sent = send_notices(services, by=on)
    rng = np.random.default_rng([seed, on.toordinal()])
    tasks = _open_tasks(services).merge(
        truth[["person_ref", "died_on", "profile"]], on="person_ref", how="left"
    )
    died = pd.to_datetime(tasks["died_on"], errors="coerce")
    alive = (died.isna() | (died > pd.Timestamp(on))).to_numpy()
    draw = rng.random(len(tasks))

    face = tasks[(tasks["kind"] == TaskKind.FACE_VERIFICATION).to_numpy() & alive]
    answers = face["profile"].map(ANSWER_RATE).fillna(0.8).to_numpy()
    face = face[draw[face.index] < answers]
    proxy = rng.random(len(face)) < face["profile"].map(PROXY_RATE).fillna(0.0).to_numpy()
    results = pd.DataFrame(
        {
            "record_id": [f"FV{on:%Y%m%d}{task:07d}" for task in face["id"]],
            "id_number": face["id_number"].to_numpy(),
            "verified_at": f"{on.isoformat()} 10:00:00",
            "result": "pass",
            "channel": np.where(proxy, "proxy", "app"),
            "score": "0.930",
            "request_id": face["id"].astype(str).to_numpy(),
        }
    )
    if len(results):
        inbox.mkdir(parents=True, exist_ok=True)
        path = inbox / f"face_requests_{on:%Y%m%d}.csv"
        results.to_csv(path, index=False)
        ingest_paths(services, source="face", paths=[path])

    # Grid workers keep to the run's plan: a visit planned for a week that has not begun by
    # `on` waits for it (the grid's capacity), one planned for no week is done at once.
    planned = pd.to_datetime(tasks["planned_week"], errors="coerce")
    started = (planned.isna() | (planned <= pd.Timestamp(on))).to_numpy()
    visits = tasks[tasks["kind"].isin([TaskKind.HOME_VISIT, TaskKind.DEATH_REVIEW]).to_numpy()
                   & started]  # fmt: skip
    with session_scope(services.sessions) as session:
        for task in visits.itertuples():
            is_alive = bool(alive[task.Index])
            if is_alive and draw[task.Index] < NOT_FOUND_RATE and task.kind == TaskKind.HOME_VISIT:
                outcome, died_on = "not_found", None
            elif is_alive:
                outcome, died_on = "alive_confirmed", None
            else:
                outcome, died_on = "deceased", dt.date.fromisoformat(str(task.died_on))
            record_outcome(
                session,
                task_id=int(task.id),
                outcome=outcome,
                actor=f"grid:{task.grid_code}",
                on=on,
                died_on=died_on,
            )
    return Answers(face_results=len(results), visits=len(visits), notices_sent=notices_sent)
