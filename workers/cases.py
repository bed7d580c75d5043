"""The typed client services use to start and decide cases (and the CLI uses too).

    cases = CaseClient(await connect_client(Settings()))
    started = await cases.start_case(RenewalDiscountRequest(...))
    view = await cases.get_case(started.case_id)
    receipt = await cases.decide(started.case_id, Decision(outcome="approve", reviewer="fin_rev_ana", reason="..."))
    result = await cases.wait_for_decision(started.case_id)

Idempotent by business key: the case ID is derived from it, and starting a case that exists
returns the existing one. Usable from any asyncio service.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gates.cases import CaseKind, CaseRequest
from gates.gate import Decision, DecisionReceipt
from gates.kinds import SPECS
from gates.trace import CaseResult, CaseView
from workers.config import DEFAULT_TASK_QUEUE
from workflows.kinds import CASE_WORKFLOWS


class CaseError(RuntimeError):
    """A case operation a user can act on (unknown case, rejected decision, ...): one-line message."""


class CaseNotFound(CaseError):
    pass


class DecisionRejected(CaseError):
    pass


@dataclass(frozen=True)
class StartedCase:
    case_id: str
    created: bool  # False when the case already existed (running or decided)


def workflow_type_for(kind: CaseKind) -> str:
    return CASE_WORKFLOWS[kind].__temporal_workflow_definition.name  # type: ignore[attr-defined]


class CaseClient:
    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE):
        self.client = client
        self.task_queue = task_queue

    async def start_case(self, request: CaseRequest) -> StartedCase:
        spec = SPECS[request.kind]
        case_id = request.case_id()
        try:
            await self.client.start_workflow(
                workflow_type_for(request.kind),
                request,
                id=case_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                # a decided case stays decided: the same business key does not reopen it
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{spec.gate_title}: {spec.ask(request)}",
                static_details=_static_details(request),
            )
        except WorkflowAlreadyStartedError:
            return StartedCase(case_id=case_id, created=False)
        return StartedCase(case_id=case_id, created=True)

    def handle(self, case_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(case_id)

    async def get_case(self, case_id: str) -> CaseView:
        try:
            return await self.handle(case_id).query("case_state", result_type=CaseView)
        except RPCError as err:
            raise _translate(case_id, err) from err

    async def decide(self, case_id: str, decision: Decision) -> DecisionReceipt:
        """Decide through the update: validated before anything is written; raises DecisionRejected with the reason."""
        try:
            return await self.handle(case_id).execute_update(
                "submit_decision", decision, result_type=DecisionReceipt
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise DecisionRejected(message) from err
        except RPCError as err:
            raise _translate(case_id, err) from err

    async def wait_for_decision(self, case_id: str) -> CaseResult:
        try:
            return await self.handle(case_id).result(result_type=CaseResult)
        except RPCError as err:
            raise _translate(case_id, err) from err


def _translate(case_id: str, err: RPCError) -> CaseError:
    if err.status == RPCStatusCode.NOT_FOUND:
        if "already completed" in err.message or "completed" in err.message.lower():
            return DecisionRejected(f"case {case_id} is already decided")
        return CaseNotFound(f"no case {case_id}")
    return CaseError(f"{case_id}: {err.message}")


def _static_details(request: CaseRequest) -> str:
    spec = SPECS[request.kind]
    fields = "\n".join(f"- **{k}**: {v}" for k, v in request.model_dump(mode="json").items())
    return (
        f"**{request.kind.value}** at the {spec.gate_title} gate\n\n"
        f"Business key `{request.business_key()}`\n\n{fields}\n\n"
        "Live state, who may decide and the exact `decide` signal are under **Current Details**."
    )
