"""One thin workflow class per kind of case: the type name shows in the UI, in visibility
queries and in replay fixtures, and a change to one kind cannot break another kind's histories.

`run` takes whatever payloads the start carries and the shared loop judges them
(`workflows/guard.py`): a start with no payload, two payloads, undecodable bytes or an invalid case
would otherwise fail the workflow task forever and wedge the case. Such a start fails at once,
with the reason as its failure message."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from gates.cases import WORKFLOW_TYPES, CaseKind
    from gates.kinds import ACCESS, PROCUREMENT, RENEWAL
    from gates.trace import CaseResult

from workflows.case import CaseWorkflow


@workflow.defn(name=WORKFLOW_TYPES[CaseKind.RENEWAL])
class RenewalDiscountExceptionWorkflow(CaseWorkflow):
    """Discount exception on a renewal, decided at the Finance gate."""

    spec = RENEWAL

    @workflow.run
    async def run(self, *payloads: RawValue) -> CaseResult:
        return await self.run_case(payloads)


@workflow.defn(name=WORKFLOW_TYPES[CaseKind.PROCUREMENT])
class ProcurementThresholdBreachWorkflow(CaseWorkflow):
    """Purchase above a threshold, routed through the Ops gate to VP approval."""

    spec = PROCUREMENT

    @workflow.run
    async def run(self, *payloads: RawValue) -> CaseResult:
        return await self.run_case(payloads)


@workflow.defn(name=WORKFLOW_TYPES[CaseKind.ACCESS])
class AccessEscalationWorkflow(CaseWorkflow):
    """Entitlement beyond policy, reviewed at the Security gate."""

    spec = ACCESS

    @workflow.run
    async def run(self, *payloads: RawValue) -> CaseResult:
        return await self.run_case(payloads)


CASE_WORKFLOWS: dict[CaseKind, type[CaseWorkflow]] = {
    CaseKind.RENEWAL: RenewalDiscountExceptionWorkflow,
    CaseKind.PROCUREMENT: ProcurementThresholdBreachWorkflow,
    CaseKind.ACCESS: AccessEscalationWorkflow,
}
