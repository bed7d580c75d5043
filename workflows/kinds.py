"""One thin workflow class per kind of case: the type name shows in the UI, in visibility
queries and in replay fixtures, and a change to one kind cannot break another kind's histories."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gates.cases import AccessEscalationRequest, CaseKind, ProcurementRequest, RenewalDiscountRequest
    from gates.kinds import ACCESS, PROCUREMENT, RENEWAL
    from gates.trace import CaseResult

from workflows.case import CaseWorkflow


@workflow.defn(name="RenewalDiscountException")
class RenewalDiscountExceptionWorkflow(CaseWorkflow):
    """Discount exception on a renewal, decided at the Finance gate."""

    spec = RENEWAL

    @workflow.run
    async def run(self, request: RenewalDiscountRequest) -> CaseResult:
        return await self.run_case(request)


@workflow.defn(name="ProcurementThresholdBreach")
class ProcurementThresholdBreachWorkflow(CaseWorkflow):
    """Purchase above a threshold, routed through the Ops gate to VP approval."""

    spec = PROCUREMENT

    @workflow.run
    async def run(self, request: ProcurementRequest) -> CaseResult:
        return await self.run_case(request)


@workflow.defn(name="AccessEscalation")
class AccessEscalationWorkflow(CaseWorkflow):
    """Entitlement beyond policy, reviewed at the Security gate."""

    spec = ACCESS

    @workflow.run
    async def run(self, request: AccessEscalationRequest) -> CaseResult:
        return await self.run_case(request)


CASE_WORKFLOWS: dict[CaseKind, type[CaseWorkflow]] = {
    CaseKind.RENEWAL: RenewalDiscountExceptionWorkflow,
    CaseKind.PROCUREMENT: ProcurementThresholdBreachWorkflow,
    CaseKind.ACCESS: AccessEscalationWorkflow,
}
