"""The one guard every case handler and the run method put their input through.

Anyone who can reach Temporal is a sender, and a sender chooses how many payloads a start, signal
or update carries and how each is encoded. The case workflows therefore take `*payloads: RawValue`
(with `workers.client.CasePayloadConverter` the SDK hands over every payload undecoded, whatever
their number or encoding) and call `single_json` here, which turns anything but exactly one strict
JSON payload into an `InputProblem` with a one-line reason. Handlers turn that into a rejected
attempt or a refused update, the run method into a refused start: never a failed workflow task.
A start is also judged on what its starter chose besides the payload (`admissible_request`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from gates.cases import REQUEST_MODELS, CaseKind, CaseRequest
    from gates.gate import validation_problems
    from gates.json_input import JsonInputError, loads_strict
    from gates.messages import StartMetadata
    from gates.presentation import static_details, static_summary
    from gates.text import neutralize
    from gates.trace import CaseCarryOver

JSON_ENCODING = b"json/plain"
NULL_ENCODING = b"binary/null"


# A starter's execution or run timeout at least this long is taken as none: no gate waits that
# long, and it is what the time-skipping test server sets when the starter gives none.
NO_TIMEOUT = timedelta(days=3650)


class InputProblem(ValueError):
    """Input that is not one strict JSON payload; the message is one line for the sender."""


class CaseRefused(Exception):
    """A start the case cannot honour; the message says why, in one line."""


Submitted = TypeVar("Submitted", bound=BaseModel)


def refusal(message: str, type_: str) -> ApplicationError:
    """What a sender is told when the case refuses what they sent: not retryable (gates.gate.REFUSAL_TYPES)."""
    return ApplicationError(message, type=type_, non_retryable=True)


def submission(payloads: Sequence[Any], model: type[Submitted], *, what: str, invalid: str, refused_as: str) -> Submitted:
    """The one `model` an update carries, or the refusal its validator raises (nothing is written)."""
    try:
        return model.model_validate(single_json(payloads, what=what))
    except InputProblem as problem:
        raise refusal(str(problem), refused_as) from None
    except ValidationError as err:
        raise refusal(f"{invalid}: {validation_problems(err)}", refused_as) from None


def single_json(payloads: Sequence[Any], *, what: str) -> Any:
    """The one JSON value `payloads` carries, or InputProblem.

    `payloads` are RawValues from the case converter; values another converter already decoded
    (a replayer or test worker built without it) are taken as they are."""
    if len(payloads) != 1:
        got = "none" if not payloads else str(len(payloads))
        raise InputProblem(f"{what} takes exactly one JSON payload; got {got}")
    payload = payloads[0]
    if not isinstance(payload, RawValue):
        return payload
    encoding = payload.payload.metadata.get("encoding", b"")
    if encoding == NULL_ENCODING:
        raise InputProblem(f"{what} takes exactly one JSON payload; got null")
    if encoding != JSON_ENCODING:
        shown = encoding.decode("ascii", "replace")[:40] or "none"
        raise InputProblem(f"{what} must be JSON (encoding json/plain); got encoding {shown!r}")
    try:
        return loads_strict(payload.payload.data, what=what)
    except JsonInputError as err:
        raise InputProblem(str(err)) from None


def preview(payloads: Sequence[Any]) -> Any:
    """What a refused submission carried, for the rejected attempt (bounded later by RejectedAttempt.of)."""
    shown = []
    for payload in payloads[:3]:
        if isinstance(payload, RawValue):
            shown.append(payload.payload.data[:2000].decode("utf-8", "replace"))
        else:
            shown.append(payload)
    if len(payloads) == 1:
        return shown[0]
    return {"payloads": len(payloads), "first": shown} if payloads else None


def reviewer_of(value: Any) -> Any:
    """The `reviewer` a submission names, if it is an object with one (anything: kept only as a label)."""
    return value.get("reviewer") if isinstance(value, dict) else None


def parsed_request(payloads: Sequence[Any], kind: CaseKind) -> CaseRequest:
    """One strict JSON payload that is a valid case of this kind, or CaseRefused naming what is wrong."""
    try:
        return REQUEST_MODELS[kind].model_validate(single_json(payloads, what="the start payload"))
    except InputProblem as problem:
        raise CaseRefused(f"invalid {kind.value} case: {problem}") from None
    except ValidationError as err:
        raise CaseRefused(f"invalid {kind.value} case: {validation_problems(err)}") from None


def admissible_request(payloads: Sequence[Any], kind: CaseKind, info: workflow.Info) -> CaseRequest:
    """The case request, if this start is one the case can honour; CaseRefused says why not.

    The starter chooses the workflow ID, the options and the attributes, so each is checked:
    one strict JSON payload that is a valid case of this kind, under exactly its own case ID
    (else a within-policy payload could be started under a privileged request's ID and be
    approved as that request), with no timeout (a case must end with a recorded outcome, never
    by timing out), no cron schedule and no memo."""
    request = parsed_request(payloads, kind)
    if info.workflow_id != request.case_id():
        shown = neutralize(info.workflow_id[:200], keep_newlines=False)
        raise CaseRefused(
            f"workflow ID {shown!r} is not this case's ID: this payload is case {request.case_id()!r} "
            f"(a {kind.value} case runs under `{kind.value}:<business key>`; see `hitl schema`)"
        )
    if any(t is not None and t < NO_TIMEOUT for t in (info.execution_timeout, info.run_timeout)):
        raise CaseRefused(
            "a case must not be started with an execution or run timeout: it ends with a recorded "
            "outcome (its policy says what happens when reviewers do not decide in time)"
        )
    if info.cron_schedule:
        raise CaseRefused("a case must not be started with a cron schedule")
    if info.raw_memo:
        raise CaseRefused("a case must not be started with a memo: what the case shows comes from the case")
    return request


def start_metadata_problem(request: CaseRequest, metadata: StartMetadata) -> str | None:
    """The UI shows a start's static summary and details as the case's own words; only the
    case's own text (as `CaseClient` sends it) or none is accepted."""
    for name, sent, own in (
        ("static summary", metadata.static_summary, static_summary(request)),
        ("static details", metadata.static_details, static_details(request)),
    ):
        if sent is not None and sent != own:
            return (
                f"the start's {name} is not this case's own text; start the case without one "
                "(or through CaseClient, which sends the case's own): the UI shows it as the case's words"
            )
    return None


def carried_over(payloads: Sequence[Any], kind: CaseKind, info: workflow.Info) -> CaseCarryOver | None:
    """The state handed over by this case's previous run, when this run continues it; CaseRefused
    for the state of another case.

    Only Temporal sets `continued_run_id`, and the IDs must be this case's: a start cannot pass
    off a forged state. A retry or cron run (also continued) carries the original request."""
    if info.continued_run_id is None:
        return None
    try:
        value = single_json(payloads, what="the carried-over state")
    except InputProblem:
        return None
    if not (isinstance(value, dict) and value.get("carried_over") is True):
        return None
    carried = CaseCarryOver.model_validate(value)
    own = (info.workflow_id, info.first_execution_run_id, kind)
    if (carried.workflow_id, carried.first_execution_run_id, carried.kind) != own:
        raise CaseRefused("carried-over state of another case")
    return carried
