"""The one guard every case handler and the run method put their input through.

Anyone who can reach Temporal is a sender, and a sender chooses how many payloads a start, signal
or update carries and how each is encoded. The case workflows therefore take `*payloads: RawValue`
(with `workers.client.CasePayloadConverter` the SDK hands over every payload undecoded, whatever
their number or encoding) and call `single_json` here, which turns anything but exactly one strict
JSON payload into an `InputProblem` with a one-line reason. Handlers turn that into a rejected
attempt or a refused update, the run method into a refused start: never a failed workflow task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from gates.json_input import JsonInputError, loads_strict

JSON_ENCODING = b"json/plain"
NULL_ENCODING = b"binary/null"


class InputProblem(ValueError):
    """Input that is not one strict JSON payload; the message is one line for the sender."""


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
