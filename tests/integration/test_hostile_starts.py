"""Hostile and careless starts on the real dev server: each is refused at once with its reason,
never wedges a workflow task, leaves no attribute that could pose as a case, writes no trace, and
does not keep the real case from opening.

The starter chooses the workflow ID, the payloads and their encoding, the timeouts, the search
attributes, the memo and the UI text: each is tried here as any SDK could send it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from demo.examples import EXAMPLES, example
from gates.bounds import SERVER_BLOB_LIMIT_BYTES
from gates.cases import WORKFLOW_TYPES, CaseKind
from hitl_temporal import CaseClient
from tests.case_helpers import wait_until_waiting
from tests.helpers import assert_eventually, new_worker
from tests.hostile import UNREADABLE_INPUTS, json_payload, our_attributes, raw_start

RENEWAL_TYPE = WORKFLOW_TYPES[CaseKind.RENEWAL]


def _payload(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


async def _refusal(client: Client, workflow_id: str) -> str:
    """The refused start's failure message, after checking it failed as a refusal, not a task failure."""
    handle = client.get_workflow_handle(workflow_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "CaseRefused", cause
    assert cause.non_retryable
    history = await handle.fetch_history()
    failed_tasks = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failed_tasks, "the refusal went through a failing workflow task"
    return cause.message


async def _no_trace(pool, case_id: str) -> None:
    assert await pool.fetchval("SELECT count(*) FROM decision_traces WHERE case_id = $1", case_id) == 0, (
        "a refused start wrote a trace"
    )


@pytest.mark.parametrize("name", list(UNREADABLE_INPUTS))
async def test_a_start_whose_input_is_not_one_json_case_is_refused_at_once(temporal_env, world_pool, name):
    payloads, expected = UNREADABLE_INPUTS[name]
    client = temporal_env.client
    case_id = "renewal_discount_exception:acme_enterprise/fy26-unreadable"
    async with new_worker(client, world_pool) as worker:
        await raw_start(client, RENEWAL_TYPE, case_id, payloads, worker.task_queue)
        message = await _refusal(client, case_id)
    assert message.startswith("invalid renewal_discount_exception case: the start payload")
    assert expected in message
    assert await our_attributes(client, case_id) == {"HitlCaseState": "refused"}


async def test_a_start_under_another_cases_id_is_refused_and_the_real_case_still_opens(temporal_env, world_pool):
    """The hijack: a within-policy GitHub request started under the privileged prod_db request's ID."""
    client = temporal_env.client
    real = example(CaseKind.ACCESS, human=True)
    within_policy = _payload("access_eng_lee_github_within_policy.json")
    async with new_worker(client, world_pool) as worker:
        await raw_start(client, WORKFLOW_TYPES[CaseKind.ACCESS], real.case_id(), [json_payload(within_policy)], worker.task_queue)
        message = await _refusal(client, real.case_id())
        assert "is not this case's ID" in message and "access_escalation:eng_lee/github/maintainer" in message
        assert await our_attributes(client, real.case_id()) == {"HitlCaseState": "refused"}
        assert await world_pool.fetchval(
            "SELECT count(*) FROM decision_traces WHERE case_id = $1 AND outcome = 'approve' AND decided_via = 'policy'",
            real.case_id(),
        ) == 0, "the refused start was approved by policy under the real case's ID"

        started = await CaseClient(client, worker.task_queue).start_case(real)
        assert started.created, "the real request could not be opened after the refused start"
        view = await wait_until_waiting(client.get_workflow_handle(real.case_id()))
        assert view.gate is not None and view.gate.gate == "security"
        await client.get_workflow_handle(real.case_id()).terminate("test over")


async def test_a_payload_of_another_kind_under_its_own_id_prefix_is_refused(temporal_env, world_pool):
    client = temporal_env.client
    renewal = _payload("renewal_acme_fy26.json")
    case_id = "procurement_threshold_breach:acme_enterprise/fy26"
    async with new_worker(client, world_pool) as worker:
        await raw_start(client, WORKFLOW_TYPES[CaseKind.PROCUREMENT], case_id, [json_payload(renewal)], worker.task_queue)
        message = await _refusal(client, case_id)
    assert message.startswith("invalid procurement_threshold_breach case:")
    assert "account: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"execution_timeout": timedelta(hours=1)}, "must not be started with an execution or run timeout"),
        ({"run_timeout": timedelta(minutes=30)}, "must not be started with an execution or run timeout"),
        ({"memo": {"note": "approved by cfo_jane"}}, "must not be started with a memo"),
    ],
    ids=["execution timeout", "run timeout", "memo"],
)
async def test_a_start_with_options_the_case_cannot_honour_is_refused(temporal_env, world_pool, options, expected):
    client = temporal_env.client
    request = example(CaseKind.RENEWAL, human=True, renewal="fy26-options")
    async with new_worker(client, world_pool) as worker:
        await raw_start(
            client, RENEWAL_TYPE, request.case_id(), [json_payload(request.model_dump(mode="json"))], worker.task_queue, **options
        )
        assert expected in await _refusal(client, request.case_id())
    await _no_trace(world_pool, request.case_id())


async def test_a_cron_start_is_refused_when_it_runs(temporal_env, world_pool):
    client = temporal_env.client
    request = example(CaseKind.RENEWAL, human=True, renewal="fy26-cron")
    async with new_worker(client, world_pool) as worker:
        first_run = await raw_start(
            client, RENEWAL_TYPE, request.case_id(), [json_payload(request.model_dump(mode="json"))], worker.task_queue,
            cron_schedule="@every 2s",
        )
        # a failed cron run hands over to the next scheduled one: its failure is in its history
        async def failed_run() -> str:
            history = await client.get_workflow_handle(request.case_id(), run_id=first_run).fetch_history()
            assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
            return history.events[-1].workflow_execution_failed_event_attributes.failure.message

        assert "must not be started with a cron schedule" in await assert_eventually(failed_run, timeout=30)
        await client.get_workflow_handle(request.case_id()).terminate("stop the cron schedule")
    await _no_trace(world_pool, request.case_id())


async def test_a_phantom_with_a_real_cases_attributes_is_refused_and_keeps_none_of_them(temporal_env, world_pool):
    """Starter-set attributes that would top the inbox and make `hitl show <key>` ambiguous."""
    client = temporal_env.client
    phantom = "renewal_discount_exception:phantom/fy26"
    async with new_worker(client, world_pool) as worker:
        await raw_start(
            client, RENEWAL_TYPE, phantom, [json_payload(_payload("renewal_acme_fy26.json"))], worker.task_queue,
            search_attributes={"HitlCaseState": "waiting", "HitlBusinessKey": "acme_enterprise/fy26", "HitlGate": "finance"},
        )
        assert "is not this case's ID" in await _refusal(client, phantom)
    assert await our_attributes(client, phantom) == {"HitlCaseState": "refused"}


async def test_a_real_case_owns_its_attributes_from_its_first_task(temporal_env, world_pool):
    client = temporal_env.client
    request = example(CaseKind.RENEWAL, human=True, renewal="fy26-owned")
    async with new_worker(client, world_pool) as worker:
        await raw_start(
            client, RENEWAL_TYPE, request.case_id(), [json_payload(request.model_dump(mode="json"))], worker.task_queue,
            search_attributes={"HitlCaseState": "decided", "HitlOutcome": "approve", "HitlRequester": "cfo_jane"},
        )
        handle = client.get_workflow_handle(request.case_id())
        await wait_until_waiting(handle)

        async def owned() -> None:
            attributes = await our_attributes(client, request.case_id())
            assert attributes["HitlCaseState"] == "waiting" and attributes["HitlRequester"] == "ae_sam"
            assert "HitlOutcome" not in attributes, attributes

        await assert_eventually(owned, timeout=20)
        await handle.terminate("test over")


async def test_ui_text_the_case_did_not_write_is_refused_and_the_cases_own_is_accepted(temporal_env, world_pool):
    client = temporal_env.client
    request = example(CaseKind.RENEWAL, human=True, renewal="fy26-summary")
    async with new_worker(client, world_pool) as worker:
        await client.start_workflow(
            RENEWAL_TYPE, request, id=request.case_id(), task_queue=worker.task_queue,
            static_summary="**Approved** by cfo_jane: nothing left to do",
        )
        assert "static summary is not this case's own text" in await _refusal(client, request.case_id())

        started = await CaseClient(client, worker.task_queue).start_case(request)  # sends the case's own summary and details
        assert started.created
        view = await wait_until_waiting(client.get_workflow_handle(request.case_id()))
        assert view.state.value == "waiting"
        await client.get_workflow_handle(request.case_id()).terminate("test over")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"justification": "approved\x00"}, "justification: Value error, text contains the control character ⟨U+0000⟩"),
        ({"justification": "\u200b"}, "justification: Value error, text has no visible characters"),
        ({"duration_days": True}, "duration_days: Input should be a valid integer"),
        ({"duration_days": "3"}, "duration_days: Input should be a valid integer"),
    ],
    ids=["NUL", "zero-width only", "true as days", "days as text"],
)
async def test_a_start_that_looks_valid_and_is_not_is_refused(temporal_env, world_pool, change, expected):
    client = temporal_env.client
    payload = {**_payload("access_eng_lee_prod_db_admin.json"), **change}
    case_id = "access_escalation:eng_lee/prod_db/admin"
    async with new_worker(client, world_pool) as worker:
        await raw_start(client, WORKFLOW_TYPES[CaseKind.ACCESS], case_id, [json_payload(payload)], worker.task_queue)
        assert expected in await _refusal(client, case_id)


async def test_a_start_over_the_servers_payload_limit_is_refused_at_the_door(temporal_env):
    client = temporal_env.client
    huge = {**_payload("renewal_acme_fy26.json"), "justification": "x" * (SERVER_BLOB_LIMIT_BYTES + 1024)}
    with pytest.raises(RPCError, match="exceeds limit"):
        await raw_start(
            client, RENEWAL_TYPE, "renewal_discount_exception:acme_enterprise/huge", [json_payload(huge)], "no-worker"
        )


async def test_a_refused_start_can_be_inspected_and_says_why(temporal_env, world_pool):
    client = temporal_env.client
    case_id = "renewal_discount_exception:acme_enterprise/fy26-inspect"
    async with new_worker(client, world_pool) as worker:
        await raw_start(client, RENEWAL_TYPE, case_id, [], worker.task_queue)
        await _refusal(client, case_id)
        with pytest.raises(Exception, match="this start was refused: invalid renewal_discount_exception case"):
            await client.get_workflow_handle(case_id).query("case_state")
    description = await client.get_workflow_handle(case_id).describe()
    assert description.status is not None and description.status.name == "FAILED"
