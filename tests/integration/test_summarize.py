"""The summarize step of a real case: the deterministic brief always, the agent's advice beside it
when configured and valid, and a silent fallback to the brief alone when the agent fails.
Real dev server, real PostgreSQL, a real local server speaking the chat-completions API."""

from __future__ import annotations

import json

import pytest

from demo.examples import FIRST_REVIEWER, example
from gates.cases import CaseKind
from gates.gate import Decision
from tests.case_helpers import start_case, trace_row, wait_until_waiting
from tests.helpers import local_http_server, new_worker
from workers.config import Settings


@pytest.fixture
def agent_server():
    with local_http_server() as server:
        yield server


def _completion(content: dict) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(content)}}]}


async def _advice_for_a_waiting_case(temporal_env, world_pool, settings: Settings):
    """The waiting case's view and the agent's note, as the regular `advise_case` activity returned it
    and as the decision trace keeps it once a reviewer decided."""
    async with new_worker(temporal_env.client, world_pool, settings=settings) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        view = await wait_until_waiting(handle)
        await handle.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer=FIRST_REVIEWER[CaseKind.RENEWAL], reason="ok")
        )
        await handle.result()
        history = await handle.fetch_history()
    traced = json.loads((await trace_row(world_pool, handle))["trace"])["agent"]
    from temporalio.api.enums.v1 import EventType

    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    [advice] = [
        json.loads(e.activity_task_completed_event_attributes.result.payloads[0].data)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and scheduled[e.activity_task_completed_event_attributes.scheduled_event_id] == "advise_case"
    ]
    assert traced == advice
    return view, advice


async def test_agent_advice_is_recorded_beside_the_deterministic_brief(temporal_env, world_pool, agent_server):
    agent_server.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        _completion(
            {
                "summary_markdown": "Acme asks 28% after a sev1; three similar cases were approved.",
                "proposed_outcome": "approve",
                "rationale": "consistent service-impact precedent",
                "cited_evidence": ["crm: service_impact"],
            }
        )
    )
    settings = Settings(_env_file=None, agent_base_url=agent_server.url_for("/v1"), agent_model="local-test")
    view, advice = await _advice_for_a_waiting_case(temporal_env, world_pool, settings)
    assert advice["used"] is True
    assert advice["advice"]["cited_evidence"] == ["crm: service_impact"]
    # the agent advises only: the brief and the proposal are still the deterministic ones
    assert view.brief.startswith("### 28% renewal discount") and "three similar cases" not in view.brief
    assert view.proposal.outcome == "approve"
    sent = json.loads(agent_server.log[0][0].data)
    assert sent["model"] == "local-test" and "28% renewal discount for `acme_enterprise`" in sent["messages"][-1]["content"]


async def test_a_failing_agent_falls_back_to_the_deterministic_brief(temporal_env, world_pool, agent_server):
    agent_server.expect_request("/v1/chat/completions", method="POST").respond_with_json(
        _completion({"summary_markdown": "x", "proposed_outcome": "auto_approve", "rationale": "x", "cited_evidence": []})
    )
    settings = Settings(_env_file=None, agent_base_url=agent_server.url_for("/v1"))
    view, advice = await _advice_for_a_waiting_case(temporal_env, world_pool, settings)
    assert advice["used"] is False
    assert "agent answer failed validation: proposed_outcome" in advice["error"]
    assert view.brief.startswith("### 28% renewal discount") and view.state.value == "waiting"
