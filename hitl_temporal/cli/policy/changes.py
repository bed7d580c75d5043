"""What `hitl policy propose` and `hitl policy review` share: finding a change and printing its brief."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from gates.policy_change import CHANGE_ID_PREFIX, ChangeState, ChangeView
from gates.text import quoted, terminal_text
from hitl_temporal.cli.policy.options import PAST
from hitl_temporal.errors import CaseError, CaseNotFound

# How long `propose` waits for the change's brief before printing what there is.
BRIEF_WAIT_SECONDS = 30.0


def change_id_of(text: str) -> str:
    """`discount_policy_v3_3` or `policy_change:discount_policy_v3_3` -> the change's workflow ID."""
    text = text.strip()
    return text if text.startswith(CHANGE_ID_PREFIX) else f"{CHANGE_ID_PREFIX}{text}"


async def change_state(client: Client, change_id: str) -> ChangeView:
    """The change's view; CaseError (one line) when it is unknown, refused or nobody answers."""
    handle = client.get_workflow_handle(change_id)
    try:
        description = await handle.describe()
        if description.status == WorkflowExecutionStatus.FAILED:
            try:
                await handle.result()
            except WorkflowFailureError as failed:
                cause = failed.cause
                message = cause.message if isinstance(cause, ApplicationError) else str(cause)
                raise CaseError(f"{change_id} was refused: {message}") from None
        recorded = (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED, WorkflowExecutionStatus.CANCELED)
        if description.status not in recorded:  # a cancel is recorded (as cancelled) before the change ends
            status = description.status.name.lower().replace("_", " ") if description.status else "closed"
            raise CaseError(f"{change_id} ended without a recorded outcome ({status})")
        return await handle.query("policy_change_state", result_type=ChangeView)
    except WorkflowQueryFailedError as err:
        raise CaseError(f"{change_id}: {err.message or err}") from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(f"no policy change {change_id}") from err
        raise CaseError(f"{change_id}: {err.message}") from err


async def prepared_state(client: Client, change_id: str, *, timeout: float = BRIEF_WAIT_SECONDS) -> ChangeView:
    """The change's view once its brief is written (or after `timeout`, as it is then)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        view = await change_state(client, change_id)
        if view.brief is not None or view.state != ChangeState.PREPARING or loop.time() >= deadline:
            return view
        await asyncio.sleep(0.3)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_change(view: ChangeView) -> str:
    """The change as a reviewer reads it: diff, who decides, what-if, agreement, gate, outcome."""
    lines = [f"{view.change_id}  ({view.state.value})"]
    if view.refusal:
        lines.append(f"refused: {terminal_text(view.refusal, one_line=True)}")
    brief = view.brief
    if brief is None:
        lines.append("the brief is being prepared: run `hitl policy review` in a moment")
        return "\n".join(lines)
    active = f"{brief.active} (in force: {brief.active_source})" if brief.active else "no active version"
    lines += [
        f"proposed {brief.proposed} ({brief.proposed_digest[:19]}...) against {active}",
        f"proposed by {terminal_text(brief.proposer, one_line=True)}: {quoted(brief.reason)}",
        f"digest {brief.digest}",
        "",
        "changes:",
    ]
    diff = brief.diff
    if diff.empty():
        lines.append("  none: the proposed version says what the active one says")
    lines += [f"  + rule {rule_id}" for rule_id in diff.rules_added]
    lines += [f"  - rule {rule_id}" for rule_id in diff.rules_removed]
    for change in diff.rules_changed:
        lines += [f"  ~ rule {change.rule_id}: {terminal_text(c, one_line=True)}" for c in change.changes]
    lines += [f"  ~ {terminal_text(c, one_line=True)}" for c in diff.gate_changes + diff.other_changes]
    lines += ["", f"who decides: {brief.plan.describe()}"]
    if brief.whatif is not None:
        t = brief.whatif.totals
        lines += [
            "",
            f"what-if over {t.cases} past cases: {t.changed} would change ({t.human_to_none} no longer need a human, "
            f"{t.none_to_human} would need one, {t.level_changed} another level, {t.proposal_changed} proposal), "
            f"{t.unchanged} unchanged, {t.cannot_tell} cannot tell; {t.rejected_would_pass} rejected by a human would now pass",
        ]
        lines += [f"  {terminal_text(line, one_line=True)}" for line in brief.whatif.changed]
        if brief.whatif.more_changed:
            lines.append(f"  ... and {brief.whatif.more_changed} more (hitl policy whatif FILE)")
    if brief.agreement:
        lines += ["", "agreement of the rules it touches (95% Wilson interval):"]
        for a in brief.agreement:
            interval = "-" if a.low is None or a.high is None else f"{a.low:.0%}-{a.high:.0%}"
            lines.append(f"  {a.rule} under {a.policy}: {a.agreed}/{a.decisions} ({_pct(a.rate)}, {interval})")
    lines.append("")
    if view.level is not None and view.level_title is not None:
        deadline = f" until {view.deadline:%Y-%m-%d %H:%MZ}" if view.deadline else ""
        lines.append(f"waiting for level {view.level + 1} ({view.level_title}){deadline}")
        lines.append(f"may decide now: {', '.join(view.may_decide) or 'nobody'}")
        if view.still_needed:
            lines.append(f"still needed: {', '.join(view.still_needed)}")
    for approval in view.approvals:
        lines.append(f"approved by {terminal_text(approval.decided_by, one_line=True)}: {quoted(approval.reason)}")
    if view.decision is not None and view.level is None and view.decision not in view.approvals:
        d = view.decision  # the last approval of a quorum is already listed above
        lines.append(f"{PAST.get(d.outcome, d.outcome)} by {terminal_text(d.decided_by, one_line=True)}: {quoted(d.reason)}")
    if view.activated:
        lines.append(f"activated: {view.activated}")
    if view.not_activated:
        lines.append(f"approved, not activated: {terminal_text(view.not_activated, one_line=True)}")
    for action in view.operator_actions:
        who = terminal_text(action.operator, one_line=True)
        lines.append(f"operator {who}: {action.action} ({terminal_text(action.result, one_line=True)}): {quoted(action.reason)}")
    for attempt in view.rejected_attempts[-5:]:
        who = terminal_text(attempt.reviewer or "?", one_line=True)
        lines.append(f"refused attempt by {who}: {terminal_text(attempt.error, one_line=True)}")
    return "\n".join(lines)
