"""Case files for `hitl start KIND --file F`: read, decoded and validated before anything is started.

A case payload is a few hundred bytes; the file is read with a cap (MAX_CASE_FILE_BYTES), so a
wrong path (a log, /dev/zero) fails at once instead of filling memory. The JSON is strict
(`gates.json_input.loads_strict`): a duplicate key is refused rather than silently taking its last
value, bytes that are not UTF-8 are named with their offset, and a byte-order mark is accepted.
Every problem is one `CaseFileError` line that names the file, shown with hidden characters
marked, since a file name or a key can carry escape sequences meant for the terminal.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from activities.bounded_read import FileUnreadable, read_file_at_most
from gates.cases import CaseRequest
from gates.gate import validation_problems
from gates.json_input import JsonInputError, loads_strict
from gates.text import neutralize

# 64 KiB: a hundred times the largest example payload, far below what Temporal takes.
MAX_CASE_FILE_BYTES = 64 * 1024
# Longest message we print: a file of many wrong keys still gets one readable line.
MAX_MESSAGE_CHARS = 1000


class CaseFileError(ValueError):
    """A case file that cannot be started; the message is one line naming the file."""


def one_line(text: str) -> str:
    """`text` safe for one terminal line: hidden characters (ESC, bidi overrides, newlines) marked, length bounded."""
    shown = neutralize(text, keep_newlines=False)
    return shown if len(shown) <= MAX_MESSAGE_CHARS else shown[: MAX_MESSAGE_CHARS - 1] + "…"


def read_case_bytes(path: Path, limit: int = MAX_CASE_FILE_BYTES) -> bytes:
    """The file's bytes, at most `limit`; reads at most one byte more, whatever the file is."""
    try:
        return read_file_at_most(path, limit, what="case", too_large="a case payload is a JSON object of a few hundred bytes")
    except FileUnreadable as err:
        raise CaseFileError(str(err)) from None


def load_case_file(path: Path, model: type[CaseRequest]) -> CaseRequest:
    """The validated case payload of `path`, or CaseFileError with one line saying what is wrong."""
    shown = neutralize(str(path), keep_newlines=False)
    data = read_case_bytes(path)
    try:
        document = loads_strict(data, what=shown)
    except JsonInputError as err:
        raise CaseFileError(one_line(str(err))) from None
    if not isinstance(document, dict):
        found = _json_type(document)
        raise CaseFileError(f"{shown}: expected a JSON object with the {model.kind.value} fields, found a JSON {found}")
    try:
        # from the decoded object, not the text: pydantic's own JSON parser would call an unpaired
        # surrogate "invalid JSON", where the field's rule says what is wrong with it
        return model.model_validate(document)
    except ValidationError as err:
        raise CaseFileError(one_line(f"{shown}: invalid {model.kind.value} case: {validation_problems(err)}")) from None


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
