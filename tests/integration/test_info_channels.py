"""A reviewer's question reaches the person asked, and a decision reaches the requester, by email to a
real local SMTP server (aiosmtpd), with a real PostgreSQL (the outbox, the deliveries, the seeded
directory's addresses). The decided notification is written with the trace and delivered after it:
once per decision key, and a mail server that is down is retried without failing anything."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shlex
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment

from activities import notify as notify_module
from activities.case_activities import CaseActivities
from activities.notify import NotifyActivities, decided_key
from demo.examples import example
from gates.brief import Proposal
from gates.cases import CaseKind
from gates.messages import Notification, Quote, RecordDecisionInput
from gates.precedent import PrecedentFeatures
from gates.trace import AgentNote, DecisionTrace
from tests.helpers import assert_eventually
from tests.integration.test_notify_channels import SmtpServer
from workers.config import Settings
from workers.devstack import free_port

UI = "http://temporal-ui.example:8233"
DUE = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """Background redelivery waits 1 s, 2 s, 4 s...: a tenth of that here."""
    monkeypatch.setattr(notify_module, "DECIDED_FIRST_WAIT", timedelta(milliseconds=100))


def settings(smtp_port: int) -> Settings:
    return Settings(
        ui_base_url=UI,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_from="HITL <hitl@example.com>",
        smtp_starttls=False,
        notify_timeout_seconds=2,
        identity="asserted",
    )


def case_id() -> str:
    return f"renewal_discount_exception:acme_enterprise/fy26-{uuid.uuid4().hex[:8]}"


def workflow_id_of(link: str) -> str:
    parts = urlsplit(link)
    segments = parts.path.split("/")
    assert f"{parts.scheme}://{parts.netloc}" == UI and segments[:4] == ["", "namespaces", "default", "workflows"]
    assert len(segments) == 5, "the ID is one path segment"
    return unquote(segments[4])


def commands(body: str) -> list[list[str]]:
    return [shlex.split(line.strip()) for line in body.splitlines() if line.strip().startswith("hitl ")]


async def test_the_person_asked_is_emailed_the_question_with_the_deadline_the_link_and_how_to_answer(
    world_pool: asyncpg.Pool, smtp: SmtpServer
):
    case = case_id()
    n = Notification(
        notification_key=f"{case}/run-1/r1/info_requested/asked",
        case_id=case,
        kind="info_requested",
        gate="finance",
        level=0,
        reviewer_group="finance_reviewers",
        recipients=["ae_jordan"],
        message="A question from fin_rev_ana about 28% renewal discount for acme_enterprise (fy26): please answer.",
        ask="28% renewal discount for acme_enterprise (fy26)",
        deadline=DUE,
        quotes=[Quote(person="fin_rev_ana", label="question", text="Which contract promised 28%?")],
        asked=["ae_jordan"],
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, retry_policy=RetryPolicy(maximum_attempts=5))
    notifier = NotifyActivities(world_pool, settings(smtp.port))

    first = await env.run(notifier.notify_reviewers, n)
    again = await env.run(notifier.notify_reviewers, n)  # a retried activity, a replayed workflow

    assert first.delivered and again.delivered and first.notification_id == again.notification_id
    [(to, message)] = smtp.inbox.received
    assert to == ["jordan.blake@example.com"], "the directory's address of the person asked"
    assert message["To"] == "Jordan Blake <jordan.blake@example.com>"
    assert message["Subject"] == f"[hitl] Information requested: 28% renewal discount for acme_enterprise (fy26) (case {case})"
    body = message.get_content().replace("\r\n", "\n")
    assert "Asked:     ae_jordan" in body and "Answer by: 2026-12-04 09:00 UTC" in body
    assert "fin_rev_ana wrote (question):\n> Which contract promised 28%?" in body
    [link] = [word for word in body.split() if word.startswith(UI)]
    assert workflow_id_of(link) == case
    assert commands(body) == [["hitl", "show", case], ["hitl", "answer", case, "--text", "<your answer>"]]
    row = await world_pool.fetchrow("SELECT payload FROM notifications WHERE notification_key = $1", n.notification_key)
    [reached] = json.loads(row["payload"])["email"]["reached"]
    assert (reached["person"], reached["role"]) == ("ae_jordan", "asked")


# -- the decided notification ------------------------------------------------------------------------


def decided_trace(case: str, run_id: str = "run-1") -> DecisionTrace:
    at = datetime.now(UTC)
    request = example(CaseKind.RENEWAL, human=True)
    return DecisionTrace(
        decision_trace="renewal_discount_exception",
        entities={"account": "acme_enterprise"},
        inputs=["crm: enterprise_arr"],
        human_gate="finance",
        case_id=case,
        business_key=case.split(":", 1)[1],
        workflow_id=case,
        run_id=run_id,
        request=request.model_dump(mode="json"),
        brief="brief",
        findings=[],
        reason_codes=["threshold_breach"],
        proposal=Proposal(outcome="approve", rationale="precedents"),
        agent=AgentNote(used=False),
        precedent_headline="",
        precedents_cited=[],
        features=PrecedentFeatures(kind=CaseKind.RENEWAL, policy="discount_policy_v3_2", amount_band="pct_25_30"),
        outcome="approve",
        decided_by="fin_rev_ana",
        decided_via="update",
        reason="Service-impact precedent; VP Sales approved in the thread",
        decided_level=0,
        opened_at=at - timedelta(hours=2),
        gate_opened_at=at - timedelta(hours=1),
        decided_at=at,
    )


def record_env() -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_namespace="default", retry_policy=RetryPolicy(maximum_attempts=0))
    return env


async def decided_rows(pool: asyncpg.Pool, case: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM notifications WHERE case_id = $1 AND kind = 'decided'", case)


async def test_the_requester_is_emailed_the_decision_once_across_a_retried_record_decision(
    world_pool: asyncpg.Pool, smtp: SmtpServer
):
    case = case_id()
    record = RecordDecisionInput(decision_key=f"{case}#run-1", trace=decided_trace(case))
    activities = CaseActivities(world_pool, settings(smtp.port))

    first = await record_env().run(activities.record_decision, record)
    retried = await record_env().run(activities.record_decision, record)  # its completion was lost, say

    assert first.newly_recorded and not retried.newly_recorded
    await assert_eventually(lambda: len(smtp.inbox.received) == 1, timeout=20)
    await asyncio.sleep(1)  # nothing more arrives
    [(to, message)] = smtp.inbox.received
    assert to == ["samantha.reyes@example.com"], "the requester (ae_sam), from the directory"
    assert message["Subject"] == f"[hitl] Decided: 28% renewal discount for acme_enterprise (fy26) (case {case})"
    body = message.get_content().replace("\r\n", "\n")
    assert body.startswith("Decided: approve by fin_rev_ana via update at level 1.")
    assert "fin_rev_ana wrote (reason):\n> Service-impact precedent; VP Sales approved in the thread" in body
    [link] = [word for word in body.split() if word.startswith(UI)]
    assert workflow_id_of(link) == case
    assert commands(body) == [["hitl", "show", case]]
    [row] = await decided_rows(world_pool, case)
    assert row["notification_key"] == decided_key(record.decision_key)
    await assert_eventually(
        lambda: world_pool.fetchval("SELECT delivered_at IS NOT NULL FROM notifications WHERE id = $1", row["id"]), timeout=10
    )


async def test_a_decided_notification_is_written_with_the_trace_or_not_at_all(world_pool: asyncpg.Pool):
    case = case_id()
    notifier = NotifyActivities(world_pool, settings(free_port()))
    with pytest.raises(RuntimeError, match="the trace's write failed"):
        async with world_pool.acquire() as conn, conn.transaction():
            await notifier.record_decided(conn, f"{case}#run-1", decided_trace(case))
            raise RuntimeError("the trace's write failed")
    assert await decided_rows(world_pool, case) == [], "rolled back with the trace"


async def test_a_mail_server_down_at_the_decision_gets_the_email_when_it_is_back_without_failing_the_record(
    world_pool: asyncpg.Pool,
):
    server = SmtpServer()  # not started yet: the port refuses connections
    case = case_id()
    record = RecordDecisionInput(decision_key=f"{case}#run-1", trace=decided_trace(case))
    activities = CaseActivities(world_pool, settings(server.port))

    receipt = await record_env().run(activities.record_decision, record)  # returns at once: the case goes on

    assert receipt.newly_recorded
    [row] = await decided_rows(world_pool, case)

    async def failed_once() -> bool:
        attempts = await world_pool.fetchval(
            "SELECT attempts FROM notification_deliveries WHERE notification_id = $1 AND channel = 'email'", row["id"]
        )
        return bool(attempts)

    await assert_eventually(failed_once, timeout=10)
    pending = await world_pool.fetchrow(
        "SELECT status, last_error FROM notification_deliveries WHERE notification_id = $1", row["id"]
    )
    assert pending["status"] == "pending" and "Connection refused" in pending["last_error"]
    server.start()
    try:
        await assert_eventually(lambda: len(server.inbox.received) == 1, timeout=30)
        [(to, _)] = server.inbox.received
        assert to == ["samantha.reyes@example.com"]
        await assert_eventually(lambda: _status(world_pool, row["id"], "delivered"), timeout=10)
    finally:
        server.stop()


async def _status(pool: asyncpg.Pool, notification_id: int, wanted: str) -> bool:
    return await pool.fetchval("SELECT status FROM notification_deliveries WHERE notification_id = $1", notification_id) == wanted


async def test_a_worker_that_stopped_before_delivering_delivers_at_its_next_start(world_pool: asyncpg.Pool, smtp: SmtpServer):
    case = case_id()
    stopped = NotifyActivities(world_pool, settings(smtp.port))
    async with world_pool.acquire() as conn, conn.transaction():
        await stopped.record_decided(conn, f"{case}#run-1", decided_trace(case))
    # ... and the worker stopped here, before `deliver_soon`

    restarted = NotifyActivities(world_pool, settings(smtp.port))
    found = await restarted.redeliver_pending()

    assert found == 1
    await assert_eventually(lambda: any(case in m["Subject"] for _, m in smtp.inbox.received), timeout=20)
    await assert_eventually(lambda: _nothing_pending(world_pool), timeout=10)  # delivered: not picked up again
    assert len(smtp.inbox.received) == 1


async def _nothing_pending(pool: asyncpg.Pool) -> bool:
    return await notify_module.pending_decided(pool, ["email"], within=timedelta(days=1)) == []
