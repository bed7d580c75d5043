"""Connector failures reach the case as missing context, which the policy sends to a human; never a guess.
Real dev server, real PostgreSQL, and a real local HTTP server standing in for the company's CRM."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision
from tests.case_helpers import start_case, trace_row, wait_until_waiting
from tests.helpers import local_http_server, new_worker
from workers.config import Settings


@pytest.fixture
def crm_server():
    with local_http_server() as server:
        yield server


def _settings(server: HTTPServer) -> Settings:
    return Settings(_env_file=None, connector_urls={"crm": server.url_for("/api")}, connector_timeout_seconds=2)


async def test_crm_down_after_retries_sends_an_in_policy_renewal_to_a_human_as_missing_data(temporal_env, world_pool, crm_server):
    calls = []

    def failing(request):
        calls.append(request.args.get("account"))
        return Response("upstream timeout", status=503)

    crm_server.expect_request("/api/crm").respond_with_handler(failing)
    # 8% on globex would be decided by policy alone; without the CRM it must not be.
    request = example(CaseKind.RENEWAL, human=False)
    async with new_worker(temporal_env.client, world_pool, settings=_settings(crm_server)) as worker:
        handle = await start_case(temporal_env.client, request, worker.task_queue)
        view = await wait_until_waiting(handle, timeout=60)
        # one quick attempt in the case's opening read, then the gather_crm activity's 4 attempts
        assert len(calls) == 5, "transient failures are retried (4 attempts) before the source counts as missing"
        assert view.reason_codes == ["ambiguous_or_missing_data"]
        assert view.proposal.outcome == "request_info"
        assert "**missing** `crm: enterprise_arr`: `crm unavailable after retries" in view.brief
        await handle.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="checked the CRM by hand")
        )
        result = await handle.result()
    assert result.decided_by == "fin_rev_ana"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert "crm: enterprise_arr" in trace["inputs"]
    assert trace["reason_codes"] == ["ambiguous_or_missing_data"]


async def test_malformed_crm_answer_marks_only_that_item_missing_and_a_human_decides(temporal_env, world_pool, crm_server):
    crm_server.expect_request("/api/crm").respond_with_json(
        {
            "items": {
                "enterprise_arr": "a lot",  # wrong type
                "tier": "enterprise",
                "contract_terms": "2-year MSA",
                "account_owner": "ae_jordan",
                "open_incidents": 0,
                "service_impact": False,
            }
        }
    )
    async with new_worker(temporal_env.client, world_pool, settings=_settings(crm_server)) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=False), worker.task_queue)
        view = await wait_until_waiting(handle, timeout=30)
        await handle.terminate("test over")
    missing = [f for f in view.findings if f.requires_human]
    assert [f.rule_id for f in missing] == ["DISC-1"]
    assert "crm.enterprise_arr" in missing[0].detail
    assert "tier: `enterprise` `crm: tier`" in view.brief  # the connector's words as a code span
    assert "**missing** `crm: enterprise_arr`: `malformed answer from crm" in view.brief
