"""The errors a case operation raises, and the one place a Temporal RPC error becomes one of them.

Every error is a `CaseError` with a one-line message a person can act on (the CLI prints it as is):

    CaseError
     ├── CaseNotFound        no case under that ID, prefix or business key
     ├── AmbiguousCase       a prefix or business key that matches several cases (`candidates`)
     ├── DecisionRejected    the case refused the decision (not allowed, already decided, closed)
     ├── AnswerRejected      the case refused the answer (nothing asked, not the person asked, closed)
     ├── ActionRefused       the case refused the operator action (validator or handler said why)
     ├── RetryNotNoted       a retry's reset was done, but the case did not record its note (`done`)
     ├── NoWorker            nobody answered: no worker polls the case's task queue
     └── CaseEnded           the workflow ended without a recorded outcome (`status`, `why`)
"""

from __future__ import annotations

from temporalio.service import RPCError, RPCStatusCode


class CaseError(RuntimeError):
    """A case operation a user can act on (unknown case, rejected decision, ...): one-line message."""


class CaseNotFound(CaseError):
    """No case under the ID, prefix or business key given."""


class AmbiguousCase(CaseError):
    """A prefix or business key that matches more than one case; `candidates` holds their IDs."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


class DecisionRejected(CaseError):
    """The case refused the decision; the message is the case's reason."""


class AnswerRejected(CaseError):
    """The case refused the answer to its question; the message is the case's reason."""


class ActionRefused(CaseError):
    """The case refused the operator action (the update's validator or handler said why)."""


class RetryNotNoted(CaseError):
    """A retry whose reset was done but whose note the case did not record; `done` says what was reset."""

    def __init__(self, message: str, *, done: str):
        super().__init__(message)
        self.done = done


class NoWorker(CaseError):
    """Nobody answered: no worker polls the case's task queue (or it is overloaded)."""


class CaseEnded(CaseError):
    """The case's workflow ended without a recorded outcome (terminated, timed out or failed, e.g. a
    refused start): a query would replay its history and show it as it was, so it is refused instead.
    `status` is "terminated", "timed out" or "failed"; `why` what its closing event says."""

    def __init__(self, message: str, *, status: str, why: str):
        super().__init__(message)
        self.status = status
        self.why = why


def rpc_error(case_id: str, err: RPCError, *, operator: bool = False) -> CaseError:
    """The CaseError for an RPC error a call about `case_id` got.

    Args:
        case_id: The case the call was about; every message names it.
        err: What the Temporal service answered.
        operator: The call was an operator action: a closed case refuses the action
            (ActionRefused) rather than a decision (DecisionRejected).

    Returns:
        CaseNotFound, DecisionRejected / ActionRefused for a closed case, NoWorker for a call nobody
        answered in time, or a plain CaseError quoting the server.
    """
    if err.status == RPCStatusCode.NOT_FOUND:
        if "completed" in err.message.lower():
            if operator:
                return ActionRefused(f"case {case_id} is already closed")
            return DecisionRejected(f"case {case_id} is already decided")
        return CaseNotFound(f"no case {case_id}")
    if err.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED) or "before a worker" in err.message:
        return NoWorker(
            f"no worker answered for {case_id} ({err.message}); "
            "is a worker (`hitl worker` or `hitl dev`) running on its task queue?"
        )
    return CaseError(f"{case_id}: {err.message}")
