"""Changed copies of the renewal workflow for the replay tests (in their own module: the sandbox
re-imports a workflow's module, so it must do nothing at import time)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from gates.trace import CaseResult

from workflows.case import CaseWorkflow
from workflows.kinds import RenewalDiscountExceptionWorkflow


@workflow.defn(name="RenewalDiscountException")
class RenewalWithAnUnpatchedChange(CaseWorkflow):
    """The renewal workflow with a timer added before anything else, and no `workflow.patched` guard."""

    spec = RenewalDiscountExceptionWorkflow.spec

    @workflow.run
    async def run(self, *payloads: RawValue) -> CaseResult:
        await workflow.sleep(timedelta(seconds=1))
        return await self.run_case(payloads)


@workflow.defn(name="RenewalDiscountException")
class RenewalWithAPatchedChange(CaseWorkflow):
    """The same timer behind `workflow.patched`: old histories take the old path."""

    spec = RenewalDiscountExceptionWorkflow.spec

    @workflow.run
    async def run(self, *payloads: RawValue) -> CaseResult:
        if workflow.patched("settle-before-gathering"):
            await workflow.sleep(timedelta(seconds=1))
        return await self.run_case(payloads)
