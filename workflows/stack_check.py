"""A one-activity workflow that `hitl check` and the smoke test run to prove the stack works end to end."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.stack_check import StackCheckInput, StackCheckResult


@workflow.defn(name="StackCheck")
class StackCheckWorkflow:
    @workflow.run
    async def run(self, check: StackCheckInput) -> StackCheckResult:
        return await workflow.execute_activity(
            "record_stack_check",
            check,
            result_type=StackCheckResult,
            activity_id="record-stack-check",
            start_to_close_timeout=timedelta(seconds=30),
            summary="write a probe row to PostgreSQL",
        )
