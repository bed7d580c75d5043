"""What Temporal shows of a case at each step: the search attributes the inbox, `hitl ops stuck` and
saved views read. Cases publish only the attributes that changed, and a decision handler leaves
publishing to the main loop when it follows in the same workflow task: nothing may go stale."""

from __future__ import annotations

from typing import Any

from demo.examples import example
from gates import search_attributes as sa
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from tests.case_helpers import case_view, start_case, wait_until_waiting
from tests.helpers import assert_eventually, new_worker


async def attributes(handle) -> dict[str, Any]:
    described = (await handle.describe()).typed_search_attributes
    return {key.name: described.get(key) for key in sa.ALL_SEARCH_ATTRIBUTES}


async def test_attributes_follow_the_case_from_waiting_through_escalation_to_decided(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        waiting = await attributes(handle)

        await handle.signal("decide", {"outcome": "approve", "reviewer": "eng_lee", "reason": "not a finance reviewer"})
        await assert_eventually(lambda: _has_rejected_attempt(handle), timeout=30, interval=0.2)
        after_refused = await attributes(handle)

        await handle.execute_update(
            "operator_action", OperatorAction(action="escalate", operator="ops_oncall", reason="deal closes today")
        )
        escalated = await attributes(handle)

        await handle.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="within precedent")
        )
        await handle.result()
        decided = await attributes(handle)

    assert waiting["HitlCaseKind"] == "renewal_discount_exception"
    assert waiting["HitlBusinessKey"] == handle.id.split(":", 1)[1].split("#")[0]
    assert waiting["HitlPolicy"] == "discount_policy_v3_2" and waiting["HitlRequester"]
    assert waiting["HitlAsk"].startswith("28% renewal discount")
    assert (waiting["HitlCaseState"], waiting["HitlGate"], waiting["HitlEscalationLevel"]) == ("waiting", "finance", 0)
    assert waiting["HitlReviewerGroup"] == "finance_reviewers"
    assert waiting["HitlEligibleGroups"] == ["finance_reviewers", "finance_directors", "cfo_office"]
    assert waiting["HitlNextDeadline"] is not None and waiting["HitlGateOpenedAt"] is not None
    assert waiting["HitlOutcome"] is None

    assert after_refused == waiting, "a refused decision changes nothing visible"

    assert (escalated["HitlEscalationLevel"], escalated["HitlReviewerGroup"]) == (1, "finance_directors")
    assert escalated["HitlEligibleGroups"] == ["finance_directors", "cfo_office"]
    assert escalated["HitlNextDeadline"] > waiting["HitlNextDeadline"]
    assert escalated["HitlGateOpenedAt"] == waiting["HitlGateOpenedAt"]

    assert (decided["HitlCaseState"], decided["HitlOutcome"]) == ("decided", "approve")
    assert decided["HitlEligibleGroups"] is None and decided["HitlNextDeadline"] is None, "no longer in anyone's inbox"
    assert (decided["HitlGate"], decided["HitlEscalationLevel"]) == ("finance", 1)


async def _has_rejected_attempt(handle) -> None:
    view = await case_view(handle)
    assert view.rejected_attempts, "the refused signal has not arrived yet"
