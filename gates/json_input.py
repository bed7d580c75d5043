"""Strict JSON for everything people and other systems send: start payloads, signals, updates,
case files, connector answers.

Python's `json.loads` quietly keeps the last of two equal keys, accepts `NaN` and `Infinity`, and
raises RecursionError (not ValueError) on deeply nested input. Decoding stays in the C decoder
(a pure-Python scan of a 500 KiB signal would stall the workflow task past Temporal's 2 s
deadlock detector); depth is checked on the decoded value. Each of those lets input that
looks valid be read as something its sender did not mean, or crash the reader. `loads_strict`
refuses them with one line that says what is wrong and where.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper nesting than any payload of ours has; the limit keeps the decoder off Python's recursion limit.
MAX_DEPTH = 32


class JsonInputError(ValueError):
    """Input that is not strict JSON; the message is one line, safe to show to the sender."""


def _refuse_constant(name: str) -> Any:
    raise JsonInputError(f"{name} is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonInputError(f"duplicate key {json.dumps(key)[:80]}: each key may appear once")
        result[key] = value
    return result


def _depth(value: Any) -> int:
    """Deepest nesting of lists and objects in a decoded value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def loads_strict(data: bytes | str, *, what: str = "input") -> Any:
    """Decode UTF-8 JSON, refusing duplicate keys, NaN/Infinity, nesting deeper than MAX_DEPTH and
    bytes that are not UTF-8. A leading byte-order mark is accepted (editors on Windows write one)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise JsonInputError(f"{what} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None
    else:
        text = data.removeprefix("\ufeff")
    if not text.strip():
        raise JsonInputError(f"{what} is empty; expected a JSON object")
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_refuse_constant)
    except JsonInputError as err:
        raise JsonInputError(f"{what}: {err}") from None
    except json.JSONDecodeError as err:
        raise JsonInputError(f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:  # nested deeper than the decoder goes
        raise JsonInputError(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # e.g. an integer too long to convert
        raise JsonInputError(f"{what} is not valid JSON: {err}") from None
    if _depth(value) > MAX_DEPTH:
        raise JsonInputError(f"{what} is nested deeper than {MAX_DEPTH} levels")
    return value
