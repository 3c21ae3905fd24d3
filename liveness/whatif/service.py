"""`liveness what-if`: the same history replayed under the live policy and a candidate, compared.

Both sides go through the same code (`replay`, then `measure`), each in a scratch state of its
own, so the comparison is fair; the live database and evidence store are only read. Each
report is kept as one JSON file in the settings' `whatif_reports_dir`, for the supervisors'
page, named by when it was made.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from liveness.errors import NotFound
from liveness.policy_files import file_version
from liveness.services import Services
from liveness.whatif.figures import measure
from liveness.whatif.history import History, WhatIfInvalid, read_history
from liveness.whatif.replay import replay, scratch_services

SIDES = ("live", "candidate")
REPORT_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}(-[0-9]+)?$")


def what_if(
    live: Services, *, policy_dir: Path, first: dt.date, last: dt.date, scratch: Path | None = None
) -> dict[str, Any]:
    """Replay `first`..`last` under the live policy and under `policy_dir`; return the report.

    `scratch` keeps the two replays' states (in `live/` and `candidate/`) for inspection;
    by default they go to a temporary folder removed afterwards. The same live history and
    policies give the same report.
    """
    if scratch is not None:
        _check_scratch(scratch)
    history = read_history(live, first=first, last=last)
    folders = {"live": live.settings.config_dir, "candidate": policy_dir}
    payment_day = live.certification_policy.payment_day
    if scratch is not None:
        sides = _replay_sides(
            live, history, folders=folders, scratch=scratch, payment_day=payment_day
        )
    else:
        with tempfile.TemporaryDirectory(prefix="liveness-whatif-") as folder:
            sides = _replay_sides(
                live, history, folders=folders, scratch=Path(folder), payment_day=payment_day
            )
    paid = {side: Decimal(sides[side]["paid_after_death"]) for side in SIDES}
    return {
        "period": {"from": first.isoformat(), "to": last.isoformat()},
        "run_dates": [as_of.isoformat() for as_of in history.runs["as_of"]],
        "policies": {side: _policy_folder(folders[side]) for side in SIDES},
        "history": {
            "deliveries": len(history.deliveries),
            "outcomes_recorded": len(history.outcomes),
        },
        **sides,
        # What the candidate would not have paid to the dead that the live policy paid.
        "overpayment_avoided": str(paid["live"] - paid["candidate"]),
    }


def _check_scratch(scratch: Path) -> None:
    """Refuse a scratch folder that is a file or holds anything: the replays start from nothing.

    A folder in use (the live evidence store, or an earlier what-if's scratch) would have the
    replays' states written into it beside what it holds.
    """
    if scratch.exists() and not scratch.is_dir():
        raise WhatIfInvalid(f"--scratch {scratch}: not a folder")
    if scratch.is_dir() and any(scratch.iterdir()):
        raise WhatIfInvalid(
            f"--scratch {scratch}: the folder is not empty; give a new or empty one"
        )


def _replay_sides(
    live: Services, history: History, *, folders: dict[str, Path], scratch: Path,
    payment_day: int,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Replay the history once per side, the candidate's folder checked before any replay."""
    states = {
        side: scratch_services(live, policy_dir=folders[side], folder=scratch / side)
        for side in reversed(SIDES)
    }
    sides = {}
    for side in SIDES:
        services = states[side]
        try:
            log = replay(services, history)
            figures = measure(
                services, run_ids=log.runs, last=history.last, payment_day=payment_day
            )
        finally:
            services.engine.dispose()
        sides[side] = {**figures, "replay": log.as_dict()}
    return sides


def _policy_folder(folder: Path) -> dict[str, Any]:
    """Return a policy folder's path and each of its files' version."""
    return {
        "folder": str(folder),
        "files": {
            path.name: file_version(path.read_bytes()) for path in sorted(folder.glob("*.toml"))
        },
    }


def save_report(live: Services, report: dict[str, Any], *, now: dt.datetime | None = None) -> str:
    """Keep a report as a JSON file of the reports' folder; return its name (its id)."""
    folder = live.settings.whatif_reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{(now or dt.datetime.now(dt.UTC)):%Y%m%dT%H%M%S}"
    name, number = stamp, 1
    while (folder / f"{name}.json").exists():
        number += 1
        name = f"{stamp}-{number}"
    made = {"id": name, "created_at": (now or dt.datetime.now(dt.UTC)).isoformat(), **report}
    target = folder / f"{name}.json"
    partial = target.with_suffix(".json.part")
    partial.write_text(json.dumps(made, ensure_ascii=False, indent=1), encoding="utf-8")
    partial.replace(target)  # whole or not at all: the page never reads half a report
    return name


def stored_reports(live: Services) -> list[dict[str, Any]]:
    """Return the stored reports' ids, dates, periods and candidate folders, newest first."""
    folder = live.settings.whatif_reports_dir
    if not folder.is_dir():
        return []
    listed = []
    for path in sorted(folder.glob("*.json"), reverse=True):
        report = json.loads(path.read_text(encoding="utf-8"))
        listed.append(
            {
                "id": path.stem,
                "created_at": report.get("created_at"),
                "period": report.get("period", {}),
                "candidate": report.get("policies", {}).get("candidate", {}).get("folder"),
            }
        )
    return listed


def stored_report(live: Services, *, report_id: str) -> dict[str, Any]:
    """Return one stored report by its id."""
    path = live.settings.whatif_reports_dir / f"{report_id}.json"
    if not REPORT_NAME.match(report_id) or not path.is_file():
        raise NotFound(f"no what-if report {report_id!r}")
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report
