"""`hitl schema`: the JSON Schemas a service in any language validates its payloads against."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from demo.examples import AUTO_EXAMPLES, EXAMPLES, HUMAN_EXAMPLES
from gates.cases import CaseKind
from tests.helpers import HITL, clean_env


def run_hitl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HITL, *args], env=clean_env(), capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def outputs() -> dict[str, subprocess.CompletedProcess]:
    """`hitl schema`, `hitl schema renewal` and `hitl schema bogus`, run side by side (each pays the CLI's start-up)."""

    runs = {"all": ("schema",), "renewal": ("schema", "renewal"), "bogus": ("schema", "bogus")}
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(run_hitl, *args) for name, args in runs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def document(outputs) -> dict:
    assert outputs["all"].returncode == 0, outputs["all"].stderr
    return json.loads(outputs["all"].stdout)


def validator(schema: dict) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_schema_document_has_every_case_kind_the_decision_and_the_operator_action(document):
    assert set(document) == {"cases", "decision", "operator_action"}
    assert set(document["cases"]) == {kind.value for kind in CaseKind}
    assert document["cases"]["renewal_discount_exception"]["title"] == "RenewalDiscountRequest"


@pytest.mark.parametrize("kind", list(CaseKind))
def test_every_example_case_file_validates_against_its_kinds_schema(document, kind):
    check = validator(document["cases"][kind.value])
    for name in (HUMAN_EXAMPLES[kind], AUTO_EXAMPLES[kind]):
        check.validate(json.loads((EXAMPLES / name).read_text()))


def test_a_bad_case_payload_is_rejected_naming_each_problem(document):
    bad = json.loads((EXAMPLES / HUMAN_EXAMPLES[CaseKind.RENEWAL]).read_text())
    bad["account"] = "Acme Enterprise!"  # not a slug
    bad["discount"] = 28  # unknown field
    del bad["requester"]  # required
    errors = list(validator(document["cases"]["renewal_discount_exception"]).iter_errors(bad))
    messages = " | ".join(e.message for e in errors)
    assert len(errors) == 3, messages
    assert "'requester' is a required property" in messages
    assert "'discount' was unexpected" in messages
    assert any(list(e.path) == ["account"] for e in errors)


def test_decision_schema_accepts_a_decision_and_rejects_a_made_up_outcome(document):
    check = validator(document["decision"])
    check.validate({"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "Service-impact precedent"})
    check.validate({"outcome": "request_info", "reviewer": "fin_rev_ana", "reason": "Which term?"})
    assert not check.is_valid({"outcome": "maybe", "reviewer": "fin_rev_ana", "reason": "x"})
    assert not check.is_valid({"outcome": "approve", "reviewer": "fin_rev_ana"})  # a reason is required
    assert not check.is_valid({"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "x", "level": 2})
    operator = validator(document["operator_action"])
    operator.validate({"action": "escalate", "operator": "ops_oncall", "reason": "deal closes today"})
    assert not operator.is_valid({"action": "delete", "operator": "ops_oncall", "reason": "x"})


def test_schema_of_one_kind_has_that_case_and_the_decision_only(outputs, document):
    assert outputs["renewal"].returncode == 0, outputs["renewal"].stderr
    one = json.loads(outputs["renewal"].stdout)
    assert set(one) == {"cases", "decision"}
    assert one["cases"] == {"renewal_discount_exception": document["cases"]["renewal_discount_exception"]}
    assert one["decision"] == document["decision"]


def test_schema_of_an_unknown_kind_is_a_one_line_error(outputs):
    result = outputs["bogus"]
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "hitl: unknown kind 'bogus'; one of access, access_escalation, procurement, procurement_threshold_breach, "
        "renewal, renewal_discount_exception"
    ]
