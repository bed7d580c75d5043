"""The case's gate events on their way to the audit log (gates/audit_trail.py says which are new).

Workflow code. No activity of its own: the events ride with the activities the case runs anyway
(the gate's first read, each notification, the recording of the decision and of late additions),
and the case's mark moves only once such an activity has returned, so an event whose write failed
goes with the next one; the store writes each event key once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gates.audit import AuditEvent
    from gates.audit_trail import AuditMark, pending_events
    from gates.case_file import CaseFile


@dataclass
class AuditBatch:
    """The events one write carries; `written()` once the activity that carried them has returned."""

    events: list[AuditEvent]
    _case: CaseFile
    _mark: AuditMark

    def written(self) -> None:
        self._case.audit_mark = self._mark


def audit_batch(case: CaseFile, started_at: datetime) -> AuditBatch:
    """What the case's next write should carry. `started_at`: when the case started."""
    info = workflow.info()
    events, mark = pending_events(case, case.audit_mark, case_id=info.workflow_id, run_id=info.run_id, started_at=started_at)
    return AuditBatch(events, case, mark)
