"""JSON Schemas (draft 2020-12) of what a service in any language sends: each case kind's start
payload, the decision, the operator action and the answer to a reviewer's question. `hitl schema`
prints them; `schemas/` holds them.

pydantic writes them from the models, corrected where its schema would refuse what the workflow
accepts: a schema may be looser than the workflow (it decides), never stricter.

- Identifiers and people's words are stripped of surrounding whitespace before their pattern and
  length are checked, so the schema's pattern allows that whitespace, and an identifier's length
  moves into its pattern (`maxLength` would count the whitespace too).
- A person's words (`gates.cases.Text`) get a pattern for what gates/text.py refuses everywhere:
  control characters, and text with nothing visible. Their `maxLength` applies only to text that
  has no surrounding whitespace (the workflow counts what is left once it is stripped).
- A decimal's number form gets the bound its digit limits imply (`amount` below 10^12).

Looser than the workflow, and left so: decimals sent as strings (pydantic reads "28", " 28 ",
"2.8e1", full-width digits; their bounds and digit limits are the workflow's to check), decimal
places (`multipleOf: 0.01` fails exact values in validators that use floating point), `1.0` for a
whole number, vertical tabs, form feeds and U+0085 inside a person's words, words made only of
zero-width or combining characters, lone surrogates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import AfterValidator, BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gates.cases import REQUEST_MODELS, WORKFLOW_TYPES, CaseKind, Text
from gates.gate import Decision, OperatorAction
from gates.info_request import InfoAnswer

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Each schema's `$id` is this plus the payload's name: a name, not an address (nothing is served there).
ID_PREFIX = "urn:hitl-temporal:schema:"


@dataclass(frozen=True)
class Payload:
    model: type[BaseModel]
    description: str


# Every payload with a schema, by the name of its file and `$id`; `hitl schema` takes these names
# (hyphens for underscores, and the kind aliases of gates.cases). One line adds a payload.
PAYLOADS: dict[str, Payload] = {
    **{
        kind.value: Payload(
            REQUEST_MODELS[kind],
            f"Start payload of a {kind.value} case: the one argument of workflow type {WORKFLOW_TYPES[kind]}.",
        )
        for kind in CaseKind
    },
    "decision": Payload(Decision, "A reviewer's decision: the argument of the `submit_decision` update or the `decide` signal."),
    "operator_action": Payload(OperatorAction, "What an operator does to a case: the argument of the `operator_action` update."),
    "answer": Payload(InfoAnswer, "The answer to a reviewer's question: the argument of the `answer_info` update."),
}


def file_name(name: str) -> str:
    return f"{name}.schema.json"


def schema_document(name: str) -> dict[str, Any]:
    """The JSON Schema of payload `name` (a key of PAYLOADS)."""
    payload = PAYLOADS[name]
    generated = payload.model.model_json_schema(schema_generator=_WorkflowAcceptance, mode="validation")
    generated.pop("description", None)
    return {"$schema": DIALECT, "$id": ID_PREFIX + name, "description": payload.description, **generated}


def documents() -> dict[str, dict[str, Any]]:
    """Every payload's JSON Schema, by file name (what `hitl schema --all` writes and `schemas/` holds)."""
    return {file_name(name): schema_document(name) for name in PAYLOADS}


def rendered(document: dict[str, Any]) -> str:
    """A schema as its file holds it: indented, UTF-8, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- where pydantic's schema would be stricter than the workflow ---------------------------------------

# Whitespace pydantic's `strip_whitespace` may remove (Unicode White_Space), or a little more: `\s` is
# not the same set in ECMA-262, Python and Rust regexes, and U+0085 is in all of them with this class.
WHITESPACE = r"\s\u0085"
_CONTROLS = r"\u0000-\u001f\u007f-\u009f"
# Control characters gates/text.py refuses wherever they are: all but tab, newline, carriage return,
# and the whitespace ones the strip removes at the ends (vertical tab, form feed, U+0085).
_REFUSED_CONTROLS = r"\u0000-\u0008\u000e-\u001f\u007f-\u0084\u0086-\u009f"
# A person's words: whitespace, then a character that may be visible, then no refused control
# character. The three parts cannot overlap, so any regex engine matches it in linear time.
PERSON_TEXT_PATTERN = f"^[{WHITESPACE}]*[^{_CONTROLS}{WHITESPACE}][^{_REFUSED_CONTROLS}]*$"

# Patterns of stripped strings this module knows how to pad: one character class, then another repeated.
_CLASS_THEN_CLASSES = re.compile(r"\^(\[[^\]]+\])(\[[^\]]+\])\*\$")
_PERSON_TEXT_CHECKS = {m.func for m in get_args(Text)[1:] if isinstance(m, AfterValidator)}


class _WorkflowAcceptance(GenerateJsonSchema):
    """pydantic's schema, with the corrections the module docstring lists."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        json_schema = super().str_schema(schema)
        return _stripped(json_schema) if schema.get("strip_whitespace") else json_schema

    def function_after_schema(self, schema: core_schema.AfterValidatorFunctionSchema) -> JsonSchemaValue:
        json_schema = super().function_after_schema(schema)
        if schema["function"]["function"] in _PERSON_TEXT_CHECKS:
            json_schema["pattern"] = PERSON_TEXT_PATTERN
        return json_schema

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        json_schema = super().decimal_schema(schema)
        digits, places = schema.get("max_digits"), schema.get("decimal_places")
        if digits is None or places is None or "anyOf" not in json_schema:
            return json_schema
        bound = 10 ** (digits - places)  # more whole digits than max_digits - decimal_places are refused
        number = json_schema["anyOf"][0]
        if min(number.get("exclusiveMaximum", bound), number.get("maximum", bound)) >= bound:
            number.pop("maximum", None)
            number["exclusiveMaximum"] = bound
        if max(number.get("exclusiveMinimum", -bound), number.get("minimum", -bound)) <= -bound:
            number.pop("minimum", None)
            number["exclusiveMinimum"] = -bound
        return json_schema


def _stripped(json_schema: JsonSchemaValue) -> JsonSchemaValue:
    """The schema of a string whose pattern and lengths pydantic checks after stripping surrounding whitespace."""
    pattern = json_schema.pop("pattern", None)
    min_length = json_schema.pop("minLength", 0)
    max_length = json_schema.pop("maxLength", None)
    if pattern is not None:
        shape = _CLASS_THEN_CLASSES.fullmatch(pattern)
        if shape is None or min_length > 1:
            raise NotImplementedError(f"no JSON Schema rule for a stripped string with pattern {pattern!r}: add one here")
        first, rest = shape.groups()
        repeat = "*" if max_length is None else f"{{0,{max_length - 1}}}"
        json_schema["pattern"] = f"^[{WHITESPACE}]*{first}{rest}{repeat}[{WHITESPACE}]*$"
        return json_schema
    # No minimum either: " " is one character before the strip and none after (a person's words
    # get PERSON_TEXT_PATTERN, which asks for a visible one).
    if max_length is not None:
        # The limit holds once surrounding whitespace is stripped: checked here only when there is none.
        json_schema["anyOf"] = [
            {"type": "string", "maxLength": max_length},
            {"type": "string", "pattern": f"^[{WHITESPACE}]|[{WHITESPACE}]$"},
        ]
    return json_schema
