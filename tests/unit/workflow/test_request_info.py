"""request_info waits for the answer: the question goes to a person, the case waits on durable timers
(a reminder, a deadline), and an answer, or none, sends it back to the gate (the fast tier: the
time-skipping server makes the days pass in a moment)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError

from demo.examples import example
from gates import bounds
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from gates.identity import TrustSnapshot
from gates.info_request import InfoAnswer
from gates.messages import Roster, RosterRequest
from gates.trace import CaseState, CaseView
from tests.case_helpers import case_view, wait_until_waiting
from tests.helpers import assert_eventually
from tests.unit.factories import policy
from tests.unit.workflow.fakes import DEMO_ROSTER, FakeWorld
from tests.unit.workflow.harness import finished
from tests.unit.workflow.test_trust import ClockedIssuer
from workflows.case import INFO_WAIT_PATCH

RENEWAL = CaseKind.RENEWAL
REQUESTER = "ae_sam"  # the renewal example's
QUESTION = "Which outage does the credit cover?"


@dataclass
class DirectoryWorld(FakeWorld):
    """The fake world with a directory that knows people: everyone in a group, the requesters, and
    `people`; those in `inactive` are known but inactive."""

    people: set[str] = field(default_factory=lambda: {"ae_sam", "buyer_pat", "eng_mgr_priya", "cs_lead_mo"})
    inactive_people: set[str] = field(default_factory=set)

    @activity.defn(name="load_reviewer_roster")
    async def load_reviewer_roster(self, request: RosterRequest) -> Roster:
        roster = await super().load_reviewer_roster(request)
        known = self.people | {p for members in DEMO_ROSTER.values() for p in members}
        roster.people = {p: p.replace("_", " ") for p in request.people if p in known}
        roster.active_people = [p for p in request.people if p in known and p not in self.inactive_people]
        roster.directory_version = "2026-12-02.1"
        return roster


@pytest.fixture
def world() -> DirectoryWorld:
    return DirectoryWorld()


async def refused(handle: WorkflowHandle, name: str, payload) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(name, payload)
    return str(failed.value.cause)


async def awaiting_info(handle: WorkflowHandle) -> CaseView:
    async def asked() -> CaseView:
        view = await case_view(handle)
        assert view.state == CaseState.AWAITING_INFO and view.info_request is not None, f"state is {view.state.value}"
        return view

    return await assert_eventually(asked, timeout=30)


async def ask(handle: WorkflowHandle, reviewer: str = "fin_rev_ana", **changes) -> dict:
    decision = Decision(outcome="request_info", reviewer=reviewer, reason=QUESTION, **changes)
    return await handle.execute_update("submit_decision", decision)


def answer(text: str = "The March outage, 14 hours.", answerer: str = REQUESTER, **changes) -> InfoAnswer:
    return InfoAnswer(answerer=answerer, text=text, **changes)


async def test_the_question_goes_to_the_requester_and_the_answer_brings_the_case_back_at_the_level_it_left(
    workflow_env, world, start
):
    directors = policy(RENEWAL).gate.levels[0]
    handle = await start(example(RENEWAL, human=True))
    first = (await wait_until_waiting(handle)).gate
    await workflow_env.sleep(directors.escalate_after + timedelta(minutes=1))  # nobody decides: escalated to directors

    async def escalated() -> None:
        assert (await case_view(handle)).gate.level == 1

    await assert_eventually(escalated, timeout=30)
    receipt = await ask(handle, reviewer="fin_dir_omar")
    assert f"the question went to {REQUESTER}" in receipt["message"]
    view = await awaiting_info(handle)
    info = view.info_request
    assert (info.asked, info.asked_by, info.question, info.round) == (REQUESTER, "fin_dir_omar", QUESTION, 1)
    assert info.due_at - info.asked_at == policy(RENEWAL).gate.answer_within and view.gate is None

    async def told() -> None:
        assert [n.kind for n in world.notifications][-1] == "info_requested"

    await assert_eventually(told, timeout=30)
    sent = world.notifications[-1]
    assert (sent.recipients, sent.asked, sent.deadline) == ([REQUESTER], [REQUESTER], info.due_at)
    assert [(q.person, q.label, q.text) for q in sent.quotes] == [("fin_dir_omar", "question", QUESTION)]
    assert QUESTION not in sent.message, "the reviewer's words travel quoted, not as the system's"

    # nobody decides while the case waits for the answer
    why = await refused(handle, "submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="fine"))
    assert f"waiting for {REQUESTER}'s answer to a question from fin_dir_omar; decide once it is answered" in why

    await workflow_env.sleep(timedelta(hours=3))
    receipt = await handle.execute_update("answer_info", answer())
    assert (receipt["accepted"], receipt["round"]) == (True, 1)
    assert "already answered by ae_sam" in await refused(handle, "answer_info", answer("again"))

    back = await wait_until_waiting(handle, round_no=2)
    assert back.gate.level == 1, "back at the level it left, not the new evaluation's start level"
    assert back.gate.opened_at > first.opened_at and back.gate.opened_at >= info.asked_at + timedelta(hours=3)
    assert "`ae_sam` answered: `The March outage, 14 hours.`" in back.brief
    assert f"`fin_dir_omar` asked `ae_sam`: `{QUESTION}`" in back.brief
    assert [r.outcome for r in back.info_rounds] == ["answered"] and back.info_request is None

    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="covered"))
    assert (await finished(handle)).outcome == "approve"
    trace = world.trace(handle)
    assert [(r.asked, r.answer, r.answered_by, r.outcome) for r in trace.info_rounds] == [
        (REQUESTER, "The March outage, 14 hours.", REQUESTER, "answered")
    ]
    assert trace.gate_opened_at == back.gate.opened_at
    kinds = [e.kind.value for e in world.audit.values()]
    assert kinds.index("info_asked") < kinds.index("info_answered") < kinds.index("decision_accepted")
    asked_event = next(e for e in world.audit.values() if e.kind.value == "info_asked")
    assert asked_event.body["asked"] == REQUESTER


async def test_an_unanswered_question_is_reminded_then_closes_and_the_gate_reopens_marked_no_answer(
    workflow_env, world, start
):
    gate = policy(RENEWAL).gate
    handle = await start(example(RENEWAL, human=True))
    await wait_until_waiting(handle)
    await ask(handle)
    await awaiting_info(handle)
    await workflow_env.sleep(gate.answer_remind_after + timedelta(minutes=1))

    async def reminded() -> None:
        assert [n.kind for n in world.notifications][-1] == "info_reminder"

    await assert_eventually(reminded, timeout=30)
    assert world.notifications[-1].recipients == [REQUESTER]
    assert (await case_view(handle)).info_request.reminded_at is not None

    await workflow_env.sleep(gate.answer_within - gate.answer_remind_after)
    back = await wait_until_waiting(handle, round_no=2)
    assert "**no answer** from `ae_sam`" in back.brief
    assert [r.outcome for r in back.info_rounds] == ["no_answer"]
    assert "too late: the question of round 1 from fin_rev_ana closed unanswered" in await refused(
        handle, "answer_info", answer()
    )
    unanswered = world.notifications[-1]
    assert (unanswered.kind, unanswered.recipients) == ("info_unanswered", [REQUESTER, "fin_rev_ana"])

    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="fine"))
    assert (await finished(handle)).outcome == "approve"
    assert [r.outcome for r in world.trace(handle).info_rounds] == ["no_answer"]


async def test_an_unanswered_question_under_timeout_outcome_records_the_gates_timeout_outcome(world, start):
    kind = CaseKind.PROCUREMENT
    base = policy(kind)
    world.policies[kind] = base.model_copy(update={"gate": base.gate.model_copy(update={"no_answer": "timeout_outcome"})})
    handle = await start(example(kind, human=True))
    await wait_until_waiting(handle)
    await ask(handle, reviewer="vp_ops_raj")
    result = await finished(handle)  # nobody answers: the reminder and the deadline fire
    assert (result.outcome, result.decided_by, result.decided_via) == (
        base.gate.timeout_outcome,
        f"timeout:{base.gate.name}",
        "timeout",
    )
    assert result.reason.startswith("no answer from buyer_pat within 2d to the question from vp_ops_raj")
    assert [n.kind for n in world.notifications] == ["info_requested", "info_reminder", "info_unanswered"]
    assert [r.outcome for r in world.trace(handle).info_rounds] == ["no_answer"]


async def test_answers_from_the_wrong_person_or_at_the_wrong_time_are_refused_and_change_nothing(world, start):
    world.operators = ["fin_cos_raf"]
    handle = await start(example(RENEWAL, human=True))
    await wait_until_waiting(handle)
    assert "case is not waiting for an answer (state: waiting)" in await refused(handle, "answer_info", answer())
    approve_asking = {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "x", "ask": "ae_sam"}
    why = await refused(handle, "submit_decision", approve_asking)
    assert "ask: only a request_info decision names whom to ask" in why
    assert "nobody_known is not a known, active person in the directory" in await refused(
        handle, "submit_decision", Decision(outcome="request_info", reviewer="fin_rev_ana", reason="?", ask="nobody_known")
    )
    world.inactive_people.add("cs_lead_mo")
    assert "cs_lead_mo is not a known, active person" in await refused(
        handle, "submit_decision", Decision(outcome="request_info", reviewer="fin_rev_ana", reason="?", ask="cs_lead_mo")
    )
    assert (await case_view(handle)).state == CaseState.WAITING, "a refused question leaves the case at its gate"

    await ask(handle, ask="buyer_pat")
    await awaiting_info(handle)
    assert "ae_sam may not answer: the question is for buyer_pat" in await refused(handle, "answer_info", answer())
    assert "invalid answer: text" in await refused(handle, "answer_info", {"answerer": "buyer_pat", "text": "  "})
    assert "invalid answer" in await refused(
        handle, "answer_info", {"answerer": "buyer_pat", "text": "x", "attachment_name": "f.txt", "attachment_text": "y" * 16_001}
    )
    assert "invalid answer" in await refused(handle, "answer_info", {"answerer": "buyer_pat", "text": "x", "extra": 1})
    # escalate and reassign wait for the answer too; a note does not
    why = await refused(handle, "operator_action", OperatorAction(action="escalate", operator="fin_cos_raf", reason="hurry"))
    assert "waiting for buyer_pat's answer" in why and "escalate once it is back at the gate" in why
    await handle.execute_update("operator_action", OperatorAction(action="note", operator="fin_cos_raf", reason="chased"))
    view = await case_view(handle)
    assert view.info_request.answer is None and view.state == CaseState.AWAITING_INFO

    # an operator may answer for the person asked, with a file
    receipt = await handle.execute_update(
        "answer_info", answer("Per the contract file.", answerer="fin_cos_raf", attachment_name="c.txt", attachment_text="ok\n")
    )
    assert receipt["accepted"]
    back = await wait_until_waiting(handle, round_no=2)
    assert "`fin_cos_raf` answered: `Per the contract file.`" in back.brief and "`c.txt`" in back.brief
    assert back.info_rounds[0].attachment_text == "ok\n"


async def test_a_decision_signalled_while_waiting_for_the_answer_is_kept_as_refused_and_a_cancel_ends_the_wait(
    world, start
):
    world.operators = ["fin_cos_raf"]
    handle = await start(example(RENEWAL, human=True))
    await wait_until_waiting(handle)
    await ask(handle)
    await awaiting_info(handle)
    await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "changed my mind"})

    async def kept() -> None:
        errors = [a.error for a in (await case_view(handle)).rejected_attempts]
        assert errors and "waiting for ae_sam's answer" in errors[-1]

    await assert_eventually(kept, timeout=30)
    receipt = await handle.execute_update(
        "operator_action", OperatorAction(action="cancel", operator="fin_cos_raf", reason="withdrawn")
    )
    assert receipt["result"] == "cancelled while waiting for an answer" and not receipt["needs_temporal_cancel"]
    result = await finished(handle)
    assert (result.outcome, result.decided_by) == ("cancelled", "operator:fin_cos_raf")
    assert [r.outcome for r in world.trace(handle).info_rounds] == ["waiting"]


async def test_a_case_waiting_for_an_answer_under_a_flood_of_signals_continues_as_new_with_the_question(
    workflow_env, world, start
):
    handle = await start(example(RENEWAL, human=True))
    await wait_until_waiting(handle)
    await ask(handle)
    before = (await awaiting_info(handle)).info_request
    for n in range(bounds.CONTINUE_AS_NEW_AFTER_SIGNALS + 2):
        await handle.signal("decide", {"junk": n})
    latest = workflow_env.client.get_workflow_handle(handle.id)

    async def continued() -> None:
        assert (await latest.describe()).run_id != handle.first_execution_run_id

    await assert_eventually(continued, timeout=30)
    after = (await awaiting_info(latest)).info_request
    assert after == before
    assert [n.kind for n in world.notifications].count("info_requested") == 1, "the question is not sent again"
    await latest.execute_update("answer_info", answer())
    await wait_until_waiting(latest, round_no=2)
    await latest.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
    await assert_eventually(lambda: _decided(world), timeout=30)
    trace = next(iter(world.traces.values()))
    assert [(r.outcome, r.answer) for r in trace.info_rounds] == [("answered", "The March outage, 14 hours.")]


async def test_a_case_cancelled_through_temporal_while_waiting_for_an_answer_is_recorded_as_cancelled(world, start):
    handle = await start(example(RENEWAL, human=True))
    await wait_until_waiting(handle)
    await ask(handle)
    await awaiting_info(handle)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await finished(handle)
    trace = world.trace(handle)
    assert (trace.outcome, trace.decided_by) == ("cancelled", "temporal:cancel-request")
    assert [r.outcome for r in trace.info_rounds] == ["waiting"]


async def test_a_question_signalled_to_an_unknown_person_is_kept_as_refused_and_a_good_one_is_sent(world, start):
    handle = await start(example(RENEWAL, human=True))
    await wait_until_waiting(handle)
    unknown = {"outcome": "request_info", "reviewer": "fin_rev_ana", "reason": "?", "ask": "nobody_known"}
    await handle.signal("decide", unknown)

    async def kept() -> None:
        errors = [a.error for a in (await case_view(handle)).rejected_attempts]
        assert errors and "nobody_known is not a known, active person" in errors[-1]

    await assert_eventually(kept, timeout=30)
    await handle.signal("decide", {"outcome": "request_info", "reviewer": "fin_rev_ana", "reason": QUESTION, "ask": "cs_lead_mo"})
    info = (await awaiting_info(handle)).info_request
    assert (info.asked, info.question) == ("cs_lead_mo", QUESTION)


async def _patches(handle: WorkflowHandle) -> list[str]:
    """The patch ids the case's history records, in order."""
    history = await handle.fetch_history()
    found = []
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if event.HasField("marker_recorded_event_attributes") and marker.marker_name == "core_patch":
            found.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


async def test_a_case_that_never_asks_records_no_new_marker_and_one_that_asks_records_it_once(world, start):
    plain = await start(example(RENEWAL, human=True))
    await wait_until_waiting(plain)
    await plain.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="fine"))
    await finished(plain)
    assert INFO_WAIT_PATCH not in await _patches(plain), "the common path's history does not grow"

    asking = await start(example(CaseKind.PROCUREMENT, human=True))
    await wait_until_waiting(asking)
    await ask(asking, reviewer="vp_ops_raj")
    await asking.execute_update("answer_info", answer(answerer="buyer_pat"))
    await wait_until_waiting(asking, round_no=2)
    await ask(asking, reviewer="vp_ops_raj")
    await asking.execute_update("answer_info", answer(answerer="buyer_pat"))
    await wait_until_waiting(asking, round_no=3)
    await asking.execute_update("submit_decision", Decision(outcome="approve", reviewer="vp_ops_raj", reason="fine"))
    await finished(asking)
    assert (await _patches(asking)).count(INFO_WAIT_PATCH) == 1
    assert [r.round for r in world.trace(asking).info_rounds] == [1, 2], "every round is kept"


def _decided(world: FakeWorld) -> None:
    assert world.traces, "not recorded yet"


async def test_verified_answers_need_the_answerers_own_proof(workflow_env, world, start, tmp_path):
    issuer = ClockedIssuer(tmp_path / "state")
    issuer.env = workflow_env
    await issuer.sync()
    world.trust = TrustSnapshot(mode="verified", issuers=[issuer.issuer_keys(fetched_at=datetime.now(UTC))])
    handle = await start(example(RENEWAL, human=True))
    digest = (await wait_until_waiting(handle)).gate.digest
    await issuer.sync()
    proof = issuer.mint("fin_rev_ana", ttl=timedelta(hours=2))
    await handle.execute_update(
        "submit_decision", Decision(outcome="request_info", reviewer="fin_rev_ana", reason=QUESTION, digest=digest, proof=proof)
    )
    await awaiting_info(handle)
    assert "answer_info needs a proof that you are ae_sam" in await refused(handle, "answer_info", answer())
    why = await refused(handle, "answer_info", answer(proof=issuer.mint("fin_rev_ana", ttl=timedelta(hours=2))))
    assert "ae_sam" in why and (await case_view(handle)).info_request.answer is None
    assert "invalid answer" in await refused(handle, "answer_info", {"answerer": REQUESTER, "text": "x", "proof": "x" * 9000})
    receipt = await handle.execute_update("answer_info", answer(proof=issuer.mint(REQUESTER, ttl=timedelta(hours=2))))
    assert receipt["accepted"]
    view = await wait_until_waiting(handle, round_no=2)
    identity = view.info_rounds[0].answered_identity
    assert identity is not None and (identity.mode, identity.person) == ("verified", REQUESTER)
