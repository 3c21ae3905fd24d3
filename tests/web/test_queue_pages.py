"""The grid worker's day over HTTP: the queue's filters and pages, claims, the deceased
confirmation, undo until the next run, and my recorded visits."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select, update

from liveness.access import create_client
from liveness.db import session_scope
from models import AuditEntry, Person, ReviewTask, Role, TaskStatus
from tests.api.conftest import World
from tests.web.conftest import csrf_of, fresh, on_task, sign_in, worker


def listed(html: str) -> list[int]:
    """Return the task ids of a queue page's cards, in order."""
    return [int(x) for x in re.findall(r'data-task="(\d+)"', html)]


def task_row(world: World, task_id: int) -> ReviewTask:
    """Return a task as stored now."""
    with session_scope(world.services.sessions) as session:
        task = session.get(ReviewTask, task_id)
        assert task is not None
        session.expunge(task)
        return task


def actions_of(world: World, actor: str) -> list[tuple[str, str | None]]:
    """Return the audited (action, target) of an actor, oldest first."""
    with session_scope(world.services.sessions) as session:
        return [
            (a.action, a.target_ref)
            for a in session.scalars(
                select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.id)
            )
        ]


def test_the_queue_filters_sorts_searches_and_pages_keeping_each_other(web_world: World) -> None:
    tasks = web_world.tasks
    with session_scope(web_world.services.sessions) as session:
        for ref, address in (("P2", "G1·1号楼101室"), ("P3", "G1·3号楼101室")):
            session.execute(update(Person).where(Person.person_ref == ref).values(address=address))
        # The low-priority visit is overdue, the others not.
        session.execute(update(ReviewTask).values(due_on=dt.date(2999, 1, 1)))
        session.execute(
            update(ReviewTask)
            .where(ReviewTask.id == tasks["visit_g1_low"])
            .values(due_on=dt.date(2020, 1, 1))
        )
    client = worker(web_world)
    assert listed(client.get("/web/queue").text) == [
        tasks["visit_g1_high"], tasks["visit_g1_low"], tasks["face_g1"],
    ]  # fmt: skip
    by_address = client.get("/web/queue?sort=address").text
    assert listed(by_address) == [tasks["visit_g1_low"], tasks["visit_g1_high"], tasks["face_g1"]]
    assert listed(client.get("/web/queue?sort=due").text)[0] == tasks["visit_g1_low"]
    assert listed(client.get("/web/queue?overdue=1").text) == [tasks["visit_g1_low"]]
    assert listed(client.get("/web/queue?kind=face_verification").text) == [tasks["face_g1"]]
    # By name, or by the last digits of the identity number.
    assert listed(client.get("/web/queue?q=张P3").text) == [tasks["visit_g1_high"]]
    tail = web_world.id_numbers["P6"][-4:]
    assert listed(client.get(f"/web/queue?q={tail}").text) == [tasks["face_g1"]]
    assert listed(client.get("/web/queue?q=%25").text) == []  # a wildcard is a character
    # Nonsense in the query string falls back to the defaults.
    assert client.get("/web/queue?sort=drop&kind=x&p=-3").status_code == 200
    # Paging keeps the filters, and the filters leave page 1.
    web_world.services.settings.web_queue_page_size = 1
    first = client.get("/web/queue?kind=home_visit&sort=due").text
    assert listed(first) == [tasks["visit_g1_low"]]
    assert 'href="/web/queue?kind=home_visit&amp;sort=due&amp;page=2"' in first
    second = client.get("/web/queue?kind=home_visit&sort=due&page=2").text
    assert listed(second) == [tasks["visit_g1_high"]]
    assert 'href="/web/queue?kind=home_visit&amp;sort=due"' in second  # back to page 1
    assert '<option value="home_visit" selected>' in second


def test_each_card_is_one_link_with_address_age_and_a_call_link_beside_it(web_world: World) -> None:
    with session_scope(web_world.services.sessions) as session:
        session.execute(
            update(Person).where(Person.person_ref == "P3").values(address="G1·3号楼101室")
        )
    page = worker(web_world).get("/web/queue").text
    task = web_world.tasks["visit_g1_high"]
    card = page[page.index(f'data-task="{task}"') :]
    card = card[: card.index("</li>")]
    link = card[card.index('<a class="card-link"') : card.index("</a>")]
    assert f'href="/web/tasks/{task}"' in link
    assert "G1·3号楼101室" in link and "岁" in link and "上门核查" in link
    assert "<a " not in link[1:]  # no link inside the card's link
    assert 'href="tel:13800000000"' in card[card.index("</a>") :]


def test_claim_and_release_from_the_queue_and_the_task(web_world: World) -> None:
    task = web_world.tasks["visit_g1_high"]
    client = worker(web_world)
    csrf = csrf_of(client.get("/web/queue").text)
    claimed = client.post(
        f"/web/tasks/{task}/claim", data={"csrf_token": csrf, "next": "/web/queue?sort=due"}
    )
    assert claimed.status_code == 303 and claimed.headers["location"] == "/web/queue?sort=due"
    stored = task_row(web_world, task)
    assert stored.status == TaskStatus.CLAIMED and stored.claimed_by == "grid_worker"
    assert "我已领取" in client.get("/web/queue").text
    # Another grid worker of the grid sees who has it, and may neither take nor release it.
    with session_scope(web_world.services.sessions) as session:
        other = create_client(session, name="li", role=Role.GRID_WORKER, grids=["G1"]).token
    colleague = fresh(web_world)
    sign_in(colleague, other)
    page = colleague.get(f"/web/tasks/{task}").text
    assert "已被领取" in page and "grid_worker" in page and "/release" not in page
    csrf2 = csrf_of(page)
    assert colleague.post(f"/web/tasks/{task}/claim", data={"csrf_token": csrf2}).status_code == 409
    refused = colleague.post(f"/web/tasks/{task}/release", data={"csrf_token": csrf2})
    assert refused.status_code == 409 and "只有领取人或主管" in refused.text
    assert task_row(web_world, task).claimed_by == "grid_worker"
    assert ("tasks.release.refused", str(task)) in actions_of(web_world, "li")
    # A supervisor may release it; the claimant may release their own from the task page.
    operator = fresh(web_world)
    sign_in(operator, web_world.tokens["operator"])
    csrf3 = csrf_of(operator.get(f"/web/tasks/{task}").text)
    released = operator.post(f"/web/tasks/{task}/release", data={"csrf_token": csrf3})
    assert released.headers["location"] == f"/web/tasks/{task}?done=released"
    assert task_row(web_world, task).status == TaskStatus.OPEN
    client.post(f"/web/tasks/{task}/claim", data={"csrf_token": csrf})
    again = client.post(f"/web/tasks/{task}/release", data={"csrf_token": csrf})
    assert again.headers["location"] == f"/web/tasks/{task}?done=released"
    assert "任务回到队列" in client.get(again.headers["location"]).text
    assert task_row(web_world, task).claimed_by is None
    mine = actions_of(web_world, "grid_worker")
    assert ("tasks.claim", str(task)) in mine and ("tasks.release", str(task)) in mine
    # Without the CSRF token nothing happens.
    assert client.post(f"/web/tasks/{task}/claim", data={}).status_code == 403


def test_deceased_is_confirmed_on_a_second_step_and_undone_until_the_next_run(
    web_world: World,
) -> None:
    task = web_world.tasks["visit_g1_high"]
    client, csrf = on_task(web_world, task)
    first = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "deceased", "note": "邻居告知"},
    )
    assert first.status_code == 200
    assert "确认：记录为已死亡" in first.text and "张P3" in first.text
    assert 'name="confirm" value="yes"' in first.text and 'value="邻居告知"' in first.text
    assert task_row(web_world, task).status == TaskStatus.OPEN  # nothing recorded yet
    late = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "deceased", "confirm": "yes",
              "died_on": "2999-01-01"},
    )  # fmt: skip
    assert late.status_code == 422 and 'id="died_on-error"' in late.text
    assert "确认：记录为已死亡" in late.text  # the error shows on the confirmation step
    done = client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "deceased", "confirm": "yes",
              "died_on": "2025-05-01", "note": "邻居告知"},
    )  # fmt: skip
    assert done.headers["location"] == f"/web/queue?recorded={task}"
    stored = task_row(web_world, task)
    assert stored.outcome == "deceased" and stored.outcome_detail["died_on"] == "2025-05-01"
    queue = client.get(done.headers["location"]).text
    assert f'action="/web/tasks/{task}/undo"' in queue
    # My recorded visits lists it, with its undo.
    visits = client.get("/web/visits").text
    assert f'data-task="{task}"' in visits and "已死亡" in visits and "/undo" in visits
    undone = client.post(f"/web/tasks/{task}/undo", data={"csrf_token": csrf})
    assert undone.headers["location"] == f"/web/tasks/{task}?done=undone"
    stored = task_row(web_world, task)
    assert stored.status == TaskStatus.OPEN and stored.outcome is None
    assert stored.outcome_detail["undone"][0]["outcome"] == "deceased"
    assert f'data-task="{task}"' not in client.get("/web/visits").text
    assert ("tasks.undo", str(task)) in actions_of(web_world, "grid_worker")
    # Recorded again; once a run has taken it up, undo is refused (a supervisor corrects).
    client.post(
        f"/web/tasks/{task}/outcome",
        data={"csrf_token": csrf, "outcome": "alive_confirmed"},
    )
    with session_scope(web_world.services.sessions) as session:
        session.execute(
            update(ReviewTask).where(ReviewTask.id == task).values(closed_run_id=web_world.run_id)
        )
    page = client.get(f"/web/tasks/{task}").text
    assert "已由认证批次处理" in page and "/undo" not in page
    refused = client.post(f"/web/tasks/{task}/undo", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert task_row(web_world, task).outcome == "alive_confirmed"
    assert ("tasks.undo.refused", str(task)) in actions_of(web_world, "grid_worker")


def test_only_the_recorder_or_a_supervisor_undoes_an_outcome(web_world: World) -> None:
    task = web_world.tasks["visit_g1_low"]
    client, csrf = on_task(web_world, task)
    client.post(f"/web/tasks/{task}/outcome", data={"csrf_token": csrf, "outcome": "refused"})
    with session_scope(web_world.services.sessions) as session:
        other = create_client(session, name="wang", role=Role.GRID_WORKER, grids=["G1"]).token
    colleague = fresh(web_world)
    sign_in(colleague, other)
    page = colleague.get(f"/web/tasks/{task}").text
    assert "/undo" not in page
    answer = colleague.post(f"/web/tasks/{task}/undo", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 409
    assert colleague.get("/web/visits").text.count("data-task=") == 0
    operator = fresh(web_world)
    sign_in(operator, web_world.tokens["operator"])
    csrf3 = csrf_of(operator.get(f"/web/tasks/{task}").text)
    assert operator.post(f"/web/tasks/{task}/undo", data={"csrf_token": csrf3}).status_code == 303
    assert task_row(web_world, task).status == TaskStatus.OPEN
