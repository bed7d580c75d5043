"""Human-in-the-loop decisions on Temporal: the package a service imports.

    from hitl_temporal import CaseClient, Decision, RenewalDiscountRequest

    cases = await CaseClient.connect("localhost:7233")
    started = await cases.start_case(RenewalDiscountRequest(account="acme_enterprise", renewal="fy26", ...))
    await cases.decide(started.case_id, Decision(outcome="approve", reviewer="fin_rev_ana", reason="..."))

It needs Temporal, pydantic and the pure domain (`gates`) only: never the worker's `workflows`,
`activities` or `workers` (a service's own top-level `workflows.py` cannot shadow them), nor
PostgreSQL or the CLI's libraries. The worker (`hitl worker`) runs the cases.
"""

from gates.cases import (
    DEFAULT_TASK_QUEUE,
    WORKFLOW_TYPES,
    AccessEscalationRequest,
    CaseKind,
    CaseRequest,
    ProcurementRequest,
    RenewalDiscountRequest,
)
from gates.gate import (
    Decision,
    DecisionOutcome,
    DecisionReceipt,
    OperatorAction,
    OperatorActionKind,
    OperatorReceipt,
)
from gates.info_request import AnswerReceipt, InfoAnswer, InfoRequest
from gates.trace import CaseResult, CaseView
from hitl_temporal.client import AwaitingPage, CaseClient, StartedCase
from hitl_temporal.errors import (
    ActionRefused,
    AmbiguousCase,
    AnswerRejected,
    CaseEnded,
    CaseError,
    CaseNotFound,
    DecisionRejected,
    NoWorker,
    RetryNotNoted,
)
from hitl_temporal.inbox import AwaitingItem, InboxItem, InboxPage
from hitl_temporal.ops import CancelOutcome, RetryPlan, RetryReceipt

__all__ = [
    "DEFAULT_TASK_QUEUE",
    "WORKFLOW_TYPES",
    "AccessEscalationRequest",
    "ActionRefused",
    "AmbiguousCase",
    "AnswerReceipt",
    "AnswerRejected",
    "AwaitingItem",
    "AwaitingPage",
    "CancelOutcome",
    "CaseClient",
    "CaseEnded",
    "CaseError",
    "CaseKind",
    "CaseNotFound",
    "CaseRequest",
    "CaseResult",
    "CaseView",
    "Decision",
    "DecisionOutcome",
    "DecisionReceipt",
    "DecisionRejected",
    "InboxItem",
    "InboxPage",
    "InfoAnswer",
    "InfoRequest",
    "NoWorker",
    "OperatorAction",
    "OperatorActionKind",
    "OperatorReceipt",
    "ProcurementRequest",
    "RenewalDiscountRequest",
    "RetryNotNoted",
    "RetryPlan",
    "RetryReceipt",
    "StartedCase",
]
