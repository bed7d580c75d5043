"""The workflow a Temporal schedule runs to sign the audit log's head (activities/audit_checkpoints.py).

One activity, retried while PostgreSQL is away; a log that does not hold fails the run (the
activity's error is non-retryable), which the UI's schedule view shows as a failed action.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.audit_checkpoints import AuditCheckpointActivities
    from gates.messages import CheckpointReceipt, CheckpointRequest

AUDIT_CHECKPOINT = "AuditCheckpoint"
SCHEDULE_ID = "hitl-audit-checkpoint"


@workflow.defn(name=AUDIT_CHECKPOINT)
class AuditCheckpointWorkflow:
    @workflow.run
    async def run(self, *payloads: RawValue) -> CheckpointReceipt:
        """Takes no input; any that is sent is ignored (the key and the folder are the worker's)."""
        return await workflow.execute_activity_method(
            AuditCheckpointActivities.sign_audit_checkpoint,
            CheckpointRequest(),
            activity_id="sign-audit-checkpoint",
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10),
            summary="verify the audit log and sign its head",
        )
