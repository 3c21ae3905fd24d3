"""The person page tells each benefit's payment state and history in words, in both languages."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.web.i18n import catalogue
from liveness.db import session_scope
from liveness.migrate import upgrade
from liveness.services import Services
from liveness.settings import Settings
from models import AuditEntry, BenefitStatus, BenefitType, ListAction, ListReason, PaymentEvent
from tests.api.conftest import World, make_world
from tests.api.payments import approve, every_value, suspend_amend_hold
from tests.liveness.conftest import REPO
from tests.web.conftest import signed_in

ROW = re.compile(r'<tr data-seq="(\d+)" data-standing="(\w+)">')


def _page(client: TestClient, ref: str, lang: str = "zh") -> str:
    answer = client.get(f"/web/persons/{ref}?lang={lang}")
    assert answer.status_code == 200, answer.text
    return html.unescape(answer.text)


def test_a_benefit_suspended_amended_and_reinstated_after_approval(web_world: World) -> None:
    story = suspend_amend_hold(web_world.services, person_ref="P1", run_id=web_world.run_id)
    operator = signed_in(web_world, "operator")

    page = _page(operator, "P1")
    assert (
        "自 2025-06-16 起暂停发放：死亡（由“逾期未认证”变更）；恢复发放（补发 12,000.00 元）待复核批准"
        in page
    )
    seqs = [(int(seq), standing) for seq, standing in ROW.findall(page)]
    assert [standing for _, standing in seqs] == ["published", "published", "awaiting_approval"]
    assert seqs[-1][0] == story.held_seq
    # Each entry: its run's date, the action, the event and the evidence in words.
    for words in ("2025-05-30", "2025-06-30", "2025-09-30", "变更停发原因", "通知后逾期未认证",
                  "认证于 2025-03-31 到期；通知于 2025-04-02 发出",
                  "来源：火化记录；记录号 HZ-2025-0042；死亡日期 2025-06-15；多发 0 个月",
                  "核查结果：本人健在；原暂停原因：死亡；补发 4 个月", "12,000.00",
                  "系统（认证批次）", "grid_worker"):  # fmt: skip
        assert words in page, words
    english = _page(operator, "P1", "en")
    assert (
        "suspended since 2025-06-16: deceased (amended from lapsed); "
        "reinstatement of 12,000.00 held for approval" in english
    )
    assert "source: cremation record; record HZ-2025-0042; died on 2025-06-15" in english

    approve(web_world.services, story, operator="operator-2")
    page = _page(operator, "P1")
    assert '<p class="state state-active" data-state="active">' in page
    assert "待复核批准" not in page.split('data-state="active">')[1].split("</p>")[0]
    assert [standing for _, standing in ROW.findall(page)] == [
        "published", "published", "approved", "published",
    ]  # fmt: skip
    assert f"批准第 {story.held_seq} 号暂缓条目" in page and "第二经办人批准" in page
    assert page.count("operator-2") == 2  # the held entry's approver and the approval's
    # The dashboard counts the back pay once: the approval, not the entry it approved.
    dashboard = operator.get("/web/dashboard").text
    assert (
        '<tr data-action="reinstate"><th scope="row">恢复发放</th><td>1</td><td class="num">¥12,000.00'
        in (dashboard)
    )
    with session_scope(web_world.services.sessions) as session:
        reads = session.scalars(
            select(AuditEntry.detail).where(
                AuditEntry.action == "persons.read", AuditEntry.target_ref == "P1"
            )
        ).all()
    assert len(reads) == 3 and all(detail["via"] == "web" for detail in reads)


def test_a_grid_worker_sees_the_payments_of_their_grid_only(web_world: World) -> None:
    suspend_amend_hold(web_world.services, person_ref="P4", run_id=web_world.run_id)
    worker = signed_in(web_world, "grid_worker")
    assert worker.get("/web/persons/P4").status_code == 404  # grid G2: as if absent
    assert "正常发放" in _page(worker, "P1")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crawl_world(
    request: pytest.FixtureRequest,
    database_url_factory: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    """Give an operator's browser on a world where P2's history names every value."""
    services = Services(
        Settings(
            database_url=database_url_factory(request.param),
            evidence_dir=tmp_path_factory.mktemp("evidence"), config_dir=REPO / "config",
        )
    )  # fmt: skip
    upgrade(services.engine)
    world = make_world(services)
    every_value(services, person_ref="P2", run_id=world.run_id)
    with world.client:
        yield signed_in(world, "operator")
    services.engine.dispose()


VALUES = (
    [("action", str(value)) for value in ListAction]
    + [("list_reason", str(value)) for value in ListReason]
    + [("payment_event", str(value)) for value in PaymentEvent]
    + [("benefit_status", str(value)) for value in BenefitStatus]
    + [("benefit", str(value)) for value in BenefitType]
)


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize(("kind", "value"), VALUES)
def test_every_action_reason_and_event_has_words_on_the_person_page(
    crawl_world: TestClient, kind: str, value: str, lang: str
) -> None:
    key = f"{kind}_{value}"
    assert key in catalogue(), f"messages.toml has no words for {kind} {value!r}"
    page = _page(crawl_world, "P2", lang)
    assert catalogue()[key][lang] in page
    attribute = {"action": "data-action", "list_reason": "data-reason"}.get(kind)
    if kind == "payment_event":
        attribute = "data-event"
    if attribute is not None:
        assert f'{attribute}="{value}"' in page  # the value is in the history itself
    # Identity numbers cited as evidence are masked; unknown evidence still shows.
    assert "110101195001010015" not in page and "110101********0015" in page
    assert "unknown_key: nested: 1" in page
