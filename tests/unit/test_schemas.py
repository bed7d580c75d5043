"""The JSON Schemas of gates/schemas.py: committed as `schemas/`, valid, usable by other tools, and
never stricter than what the workflow accepts (the models), in the regex dialects validators use."""

from __future__ import annotations

import functools
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import jsonschema
import pytest
import regress
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError

from demo.examples import AUTO_EXAMPLES, EXAMPLES, HUMAN_EXAMPLES
from gates.cases import MAX_TEXT_CHARS, REQUEST_MODELS, CaseKind
from gates.schemas import DIALECT, ID_PREFIX, PAYLOADS, WHITESPACE, documents, file_name, rendered

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
REFRESH = "hitl schema --all schemas"
EXAMPLE_KINDS = {name: kind for table in (HUMAN_EXAMPLES, AUTO_EXAMPLES) for kind, name in table.items()}


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


def committed(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / file_name(name)).read_text())


# -- committed, and valid JSON Schema ------------------------------------------------------------------


def test_schemas_folder_holds_exactly_what_the_models_generate():
    expected = {name: rendered(document) for name, document in documents().items()}
    on_disk = {path.name: path.read_text() for path in SCHEMAS.iterdir()}
    assert set(on_disk) == set(expected), f"schemas/ has other files than the models give: run `{REFRESH}`"
    stale = sorted(name for name in expected if on_disk[name] != expected[name])
    assert not stale, f"schemas/ is out of date with the models ({', '.join(stale)}): run `{REFRESH}`"


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_each_schema_is_a_draft_2020_12_schema_naming_itself(name):
    document = committed(name)
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == DIALECT
    assert document["$id"] == ID_PREFIX + name
    assert document["additionalProperties"] is False


def test_there_is_one_schema_per_case_kind_plus_the_decision_the_operator_action_and_the_answer():
    assert sorted(documents()) == sorted(
        [f"{kind.value}.schema.json" for kind in CaseKind]
        + ["decision.schema.json", "operator_action.schema.json", "answer.schema.json"]
    )
    assert {PAYLOADS[kind.value].model for kind in CaseKind} == set(REQUEST_MODELS.values())


# -- examples pass, bad payloads fail ------------------------------------------------------------------


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(committed(name))


def test_the_catalogue_covers_every_example_file():
    assert {path.name for path in EXAMPLES.glob("*.json")} == set(EXAMPLE_KINDS)


@pytest.mark.parametrize("file", sorted(EXAMPLE_KINDS))
def test_every_example_validates_against_its_kinds_schema(file):
    validator(EXAMPLE_KINDS[file].value).validate(example(file))


def problems(name: str, payload: Any) -> set[tuple[tuple, str]]:
    """Each error's path (a field, or () for the payload) and the keyword that refused it."""
    return {(tuple(error.path), str(error.validator)) for error in validator(name).iter_errors(payload)}


def test_the_issues_bogus_payload_is_refused():
    bogus = {"account": 5, "bogus": True}
    assert problems("renewal_discount_exception", bogus) == {
        (("account",), "type"),
        ((), "additionalProperties"),
        ((), "required"),
    }
    messages = " | ".join(e.message for e in validator("renewal_discount_exception").iter_errors(bogus))
    assert "'bogus' was unexpected" in messages and "'requester' is a required property" in messages


def test_a_realistic_bad_renewal_is_refused_naming_each_problem():
    bad = example(HUMAN_EXAMPLES[CaseKind.RENEWAL])
    bad["account"] = "Acme Enterprise!"  # not a slug
    bad["requested_discount_pct"] = 100  # 100 % off
    bad["justification"] = "approved\x00"  # NUL: PostgreSQL cannot store it
    bad["discount"] = 28  # unknown field
    del bad["requester"]
    errors = list(validator("renewal_discount_exception").iter_errors(bad))
    assert {tuple(e.absolute_path) for e in errors} == {("account",), ("requested_discount_pct",), ("justification",), ()}
    messages = " | ".join(e.message for e in errors)
    assert "'discount' was unexpected" in messages and "'requester' is a required property" in messages
    with pytest.raises(ValidationError):  # and the workflow refuses it too
        PAYLOADS["renewal_discount_exception"].model.model_validate(bad)


README = (ROOT / "README.md").read_text()
README_INPUTS = re.findall(r"--name (submit_decision|operator_action) --input '(\{[^']*\})'", README)


@pytest.mark.parametrize(("update", "name"), [("submit_decision", "decision"), ("operator_action", "operator_action")])
def test_decision_and_operator_action_schemas_accept_what_the_readme_sends(update, name):
    sent = [json.loads(body) for shown, body in README_INPUTS if shown == update]
    assert sent, f"the README shows no {update} input"
    for payload in sent:
        validator(name).validate(payload)


def test_answer_schema_takes_an_answer_with_or_without_its_file_and_refuses_bad_ones():
    plain = {"answerer": "sales_rep_sam", "text": "The 2025 MSA, clause 4.2"}
    with_file = {**plain, "attachment_name": "msa.txt", "attachment_text": "4.2 Discounts...\n", "proof": "eyJ.x.y"}
    for answer in (plain, with_file):
        validator("answer").validate(answer)
        PAYLOADS["answer"].model.model_validate(answer)  # and the case takes it
    assert problems("answer", {"answerer": "sales_rep_sam", "text": " "}) == {(("text",), "pattern")}
    assert problems("answer", {"answerer": "Sam!", "text": "ok", "round": 2}) == {
        (("answerer",), "pattern"),
        ((), "additionalProperties"),
    }
    assert problems("answer", {"answerer": "sales_rep_sam", "text": "ok", "attachment_text": "x" * 16_001}) == {
        (("attachment_text",), "anyOf")
    }
    assert problems("answer", {"text": "ok"}) == {((), "required")}


def test_decision_and_operator_action_schemas_refuse_bad_ones():
    assert problems("decision", {"outcome": "maybe", "reviewer": "fin_rev_ana", "reason": "x"}) == {(("outcome",), "enum")}
    assert problems("decision", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": " ", "level": 2}) == {
        (("reason",), "pattern"),
        ((), "additionalProperties"),
    }
    assert problems("decision", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "ok", "digest": "sha256:abc"}) == {
        (("digest",), "anyOf")
    }
    assert problems("operator_action", {"action": "delete", "operator": "Ops On-call", "reason": "x"}) == {
        (("action",), "enum"),
        (("operator",), "pattern"),
    }


# -- never stricter than the workflow ------------------------------------------------------------------


def _ecma_search(pattern: str, text: str) -> bool:
    return _ecma(pattern).find(text) is not None


@functools.cache
def _ecma(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, "u")  # what check-jsonschema uses by default


def _rust_search(pattern: str, text: str) -> bool:
    try:
        _rust(pattern).validate_python(text)
    except ValidationError:
        return False
    return True


@functools.cache
def _rust(pattern: str) -> TypeAdapter:
    return TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])  # pydantic-core: what generated models use


def _with_regexes(search: Callable[[str, str], bool]) -> type[jsonschema.Draft202012Validator]:
    def pattern(validator, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
        if validator.is_type(instance, "string") and not search(pattern, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, validators={"pattern": pattern})


# Validators with the regex dialects of Python (`jsonschema`), ECMA-262 (JSON Schema's own; JavaScript,
# check-jsonschema) and Rust (pydantic, so models generated from the schemas).
DIALECTS = {"python": jsonschema.Draft202012Validator, "ecma": _with_regexes(_ecma_search), "rust": _with_regexes(_rust_search)}


def accepted_by_workflow(name: str, payload: dict[str, Any]) -> bool:
    try:
        PAYLOADS[name].model.model_validate(payload)
    except ValidationError:
        return False
    return True


def refusing_dialects(name: str, payload: dict[str, Any]) -> list[str]:
    document = committed(name)
    return [dialect for dialect, check in DIALECTS.items() if not check(document).is_valid(payload)]


def test_pydantics_strip_removes_only_characters_the_schemas_whitespace_class_matches():
    strip = TypeAdapter(Annotated[str, StringConstraints(strip_whitespace=True)])
    stripped = [
        c for c in map(chr, range(sys.maxunicode + 1)) if not 0xD800 <= ord(c) < 0xE000 and strip.validate_python(c + "x") == "x"
    ]
    assert len(stripped) == 25  # Unicode White_Space
    one = f"^[{WHITESPACE}]$"
    searches: dict[str, Callable[[str, str], object]] = {"python": re.search, "ecma": _ecma_search, "rust": _rust_search}
    for dialect, search in searches.items():
        assert [f"U+{ord(c):04X}" for c in stripped if not search(one, c)] == [], dialect


# Characters where the workflow and a schema could disagree: every kind of whitespace, controls,
# invisible and combining characters, the characters of identifiers and their neighbours.
TRICKY = list("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\x1c\x1f\x00\x08\x0e\x1b\x7f\x84\x86\x9f")
TRICKY += list("\u200b\u200e\u202e\u2060\ufeff\u0301\u115f\u3164\ue000\U000e0001\U0001f600") + list("az09_.-@AZ!/:é٢")
tricky_text = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8"), max_size=12)
texts = tricky_text | st.builds(lambda pad, body: pad + body + pad, tricky_text, st.sampled_from(["", " ", "\n\u3000"]))
# Strings near the length limits, with and without surrounding whitespace.
long_texts = st.builds(
    lambda n, pad: pad + "a" * n + pad,
    st.sampled_from([79, 80, 81, MAX_TEXT_CHARS - 1, MAX_TEXT_CHARS, MAX_TEXT_CHARS + 1]),
    st.sampled_from(["", " ", "\t\x85"]),
)
decimal_strings = st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str) | st.sampled_from(
    [" 28 ", "28.", ".5", "+5", "1e1", "1_0", "２８", "0x1", "NaN", "", "1e12", "999999999999.99"]
)
numbers = st.integers(-(10**14), 10**14) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | decimal_strings

# Each payload's fields, with what to try in them (every other field as in an example of that kind).
FIELDS: dict[str, dict[str, st.SearchStrategy]] = {
    "renewal_discount_exception": {
        "account": texts | long_texts,
        "requester": texts | long_texts,
        "justification": texts | long_texts,
        "chat_thread": texts | st.none(),
        "requested_discount_pct": numbers,
    },
    "procurement_threshold_breach": {"currency": texts, "amount": numbers},
    "access_escalation": {"duration_days": numbers, "policy_exception": texts, "subject_user": texts},
    "decision": {"reason": texts | long_texts, "reviewer": texts, "digest": texts | st.none(), "proof": long_texts | st.none()},
    "operator_action": {"group": texts | st.none(), "delegate": texts | st.none(), "reason": texts},
}
BASES = {
    **{kind.value: example(HUMAN_EXAMPLES[kind]) for kind in CaseKind},
    "decision": {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "Service-impact precedent"},
    "operator_action": {"action": "escalate", "operator": "ops_oncall", "reason": "deal closes today"},
}
CHANGES = st.one_of(
    *(st.tuples(st.just(name), st.just(field), values) for name, fields in FIELDS.items() for field, values in fields.items())
)


@settings(max_examples=600, deadline=None)
@given(CHANGES)
def test_no_schema_refuses_a_value_the_workflow_accepts(change):
    name, field, value = change
    payload = {**BASES[name], field: value}
    if accepted_by_workflow(name, payload):
        assert refusing_dialects(name, payload) == [], f"the workflow accepts {name}.{field} = {value!r}"


# Values the workflow refuses that the schemas refuse too, in every dialect (the cheap additions).
REFUSED = [
    ("renewal_discount_exception", "account", "Acme"),
    ("renewal_discount_exception", "account", "a" * 81),
    ("renewal_discount_exception", "account", " "),
    ("renewal_discount_exception", "requester", "ae sam"),
    ("renewal_discount_exception", "justification", " \n\t\u3000"),
    ("renewal_discount_exception", "justification", "ok\x1b[2J"),
    ("renewal_discount_exception", "justification", "x" * (MAX_TEXT_CHARS + 1)),
    ("renewal_discount_exception", "requested_discount_pct", 100),
    ("renewal_discount_exception", "requested_discount_pct", True),
    ("procurement_threshold_breach", "amount", 10**12),
    ("procurement_threshold_breach", "amount", 0),
    ("procurement_threshold_breach", "currency", "usd"),
    ("access_escalation", "duration_days", 366),
    ("access_escalation", "duration_days", "30"),
    ("decision", "reason", "\u2028"),
    ("decision", "digest", "sha256:" + "A" * 64),
    ("decision", "proof", ""),
    ("operator_action", "group", "Finance"),
]


@pytest.mark.parametrize(("name", "field", "value"), REFUSED, ids=lambda v: repr(v)[:30])
def test_schemas_refuse_what_the_workflow_refuses_where_it_is_cheap_to_say(name, field, value):
    payload = {**BASES[name], field: value}
    assert not accepted_by_workflow(name, payload)
    assert refusing_dialects(name, payload) == list(DIALECTS)


def test_surrounding_whitespace_the_workflow_strips_passes_every_schema():
    payload = {**BASES["decision"], "reviewer": " fin_rev_ana\n", "reason": "\u3000" + "x" * MAX_TEXT_CHARS + "\n"}
    assert accepted_by_workflow("decision", payload)
    assert refusing_dialects("decision", payload) == []


# -- a code generator can use them ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_models(tmp_path_factory) -> dict[str, type[BaseModel]]:
    """Python models that datamodel-code-generator writes from `schemas/`, imported, by payload name."""
    out = tmp_path_factory.mktemp("generated") / "hitl_schemas"
    codegen = Path(sys.executable).parent / "datamodel-codegen"
    command = [str(codegen), "--input", str(SCHEMAS), "--input-file-type", "jsonschema", "--output", str(out)]
    command += ["--output-model-type", "pydantic_v2.BaseModel", "--disable-timestamp", "--formatters", "builtin"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(out.parent))
    try:
        # one module per file (renewal_discount_exception.schema.json: ..._schema.py), one class per title
        return {
            name: getattr(importlib.import_module(f"hitl_schemas.{name}_schema"), committed(name)["title"]) for name in PAYLOADS
        }
    finally:
        sys.path.remove(str(out.parent))


@pytest.mark.parametrize("file", sorted(EXAMPLE_KINDS))
def test_models_generated_from_the_schemas_load_every_example(generated_models, file):
    loaded = generated_models[EXAMPLE_KINDS[file].value].model_validate(example(file))
    assert loaded.model_dump(mode="json", exclude_unset=True) == example(file)


def test_models_generated_from_the_schemas_refuse_a_bad_payload_and_load_readme_decisions(generated_models):
    with pytest.raises(ValidationError):
        generated_models["renewal_discount_exception"].model_validate({"account": 5, "bogus": True})
    for update, body in README_INPUTS:
        generated_models["decision" if update == "submit_decision" else "operator_action"].model_validate(json.loads(body))
