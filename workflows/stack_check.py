"""A one-activity workflow that `hitl check` and the smoke test run to prove the stack works end to end."""

from __future__ import annotations

from datetime import timedelta

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.stack_check import StackCheckActivities
    from gates.gate import validation_problems
    from gates.messages import StackCheckInput, StackCheckResult
    from workflows.guard import InputProblem, single_json


STACK_CHECK = "StackCheck"


@workflow.defn(name=STACK_CHECK)
class StackCheckWorkflow:
    @workflow.run
    async def run(self, *payloads: RawValue) -> StackCheckResult:
        """Like the case workflows, it runs on the case task queue and judges its own input: a start
        with no input, several, or an invalid one fails at once instead of wedging its task."""
        try:
            check = StackCheckInput.model_validate(single_json(payloads, what="the stack check"))
        except InputProblem as problem:
            raise ApplicationError(str(problem), type="InvalidInput", non_retryable=True) from None
        except ValidationError as err:
            raise ApplicationError(validation_problems(err), type="InvalidInput", non_retryable=True) from None
        return await workflow.execute_activity_method(
            StackCheckActivities.record_stack_check,
            check,
            activity_id="record-stack-check",
            start_to_close_timeout=timedelta(seconds=30),
            summary="write a probe row to PostgreSQL",
        )
