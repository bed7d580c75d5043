"""request_info waits for the answer, on the real dev server and PostgreSQL, in verified mode: the
question goes to the requester (the demo directory's buyer_pat), who answers with a proof; the case
gathers again, returns to its gate with the answer in the brief, and the trace keeps the round.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from activities.identity import LocalIssuer
from demo.examples import example
from gates.cases import CaseKind
from gates.trace import CaseState, CaseView
from tests.case_helpers import case_view, save_history, start_case, trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker
from tests.integration.test_trust import decision, verified_settings

QUESTION = "Is the quote for three years or one?"
ANSWER = "Three years, fixed price; the signed quote is attached."


async def refused(handle: WorkflowHandle, name: str, payload: dict) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(name, payload)
    return str(failed.value.cause)


async def test_a_question_reaches_the_requester_who_answers_with_a_proof_and_the_trace_keeps_the_round(
    temporal_env, world_pool, tmp_path
):
    issuer = LocalIssuer(tmp_path)
    async with new_worker(temporal_env.client, world_pool, settings=verified_settings(tmp_path)) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        digest = (await wait_until_waiting(handle)).gate.digest
        assert "nobody_here is not a known, active person in the directory" in await refused(
            handle, "submit_decision", decision(issuer, "vp_ops_raj", digest, outcome="request_info", ask="nobody_here")
        )
        await handle.execute_update(
            "submit_decision", decision(issuer, "vp_ops_raj", digest, outcome="request_info", reason=QUESTION)
        )

        async def awaiting() -> CaseView:
            view = await case_view(handle)
            assert view.state == CaseState.AWAITING_INFO and view.info_request is not None
            return view

        info = (await assert_eventually(awaiting)).info_request
        assert (info.asked, info.asked_by, info.question) == ("buyer_pat", "vp_ops_raj", QUESTION)
        described = await handle.describe()
        assert described.typed_search_attributes is not None
        state = [p.value for p in described.typed_search_attributes if p.key.name == "HitlCaseState"]
        assert state == ["awaiting_info"]

        async def sent() -> None:
            outbox = await world_pool.fetch("SELECT kind FROM notifications WHERE case_id = $1 ORDER BY id", handle.id)
            assert [row["kind"] for row in outbox][-1:] == ["info_requested"]

        await assert_eventually(sent)

        answer = {"answerer": "buyer_pat", "text": ANSWER}
        assert "needs a proof that you are buyer_pat" in await refused(handle, "answer_info", answer)
        forged = answer | {"proof": issuer.mint("vp_ops_raj", ttl=timedelta(minutes=30))}
        assert "buyer_pat" in await refused(handle, "answer_info", forged)
        proven = answer | {
            "proof": issuer.mint("buyer_pat", ttl=timedelta(minutes=30)),
            "attachment_name": "quote.txt",
            "attachment_text": "3 years, USD 48,000 per year\n",
        }
        receipt = await handle.execute_update("answer_info", proven)
        assert receipt["accepted"] and receipt["round"] == 1
        assert "already answered by buyer_pat" in await refused(handle, "answer_info", proven)

        back = await wait_until_waiting(handle, round_no=2)
        assert f"`buyer_pat` answered: `{ANSWER}`" in back.brief
        await handle.execute_update("submit_decision", decision(issuer, "vp_ops_raj", back.gate.digest, reason="three years ok"))
        await handle.result()
        await save_history(handle, CaseKind.PROCUREMENT, "request_info_answered")

    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    (kept,) = trace["info_rounds"]
    assert (kept["asked"], kept["answered_by"], kept["answer"], kept["outcome"]) == ("buyer_pat", "buyer_pat", ANSWER, "answered")
    assert kept["answered_identity"]["mode"] == "verified" and kept["attachment_name"] == "quote.txt"
    kinds = [row["kind"] for row in await world_pool.fetch("SELECT kind FROM audit_events WHERE case_id = $1", handle.id)]
    assert "info_asked" in kinds and "info_answered" in kinds
