"""`hitl schema`: one JSON Schema per payload, which a service in any language validates against."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from demo.examples import AUTO_EXAMPLES, EXAMPLES, HUMAN_EXAMPLES
from gates.cases import CaseKind
from tests.helpers import HITL, clean_env

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CHECK_JSONSCHEMA = str(Path(sys.executable).parent / "check-jsonschema")
NAMES = (
    "access, access_escalation, answer, decision, operator-action, procurement, procurement_threshold_breach, renewal, "
    "renewal_discount_exception"
)
BOGUS = {"account": 5, "bogus": True}  # what check-jsonschema accepted against the old `hitl schema renewal`


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), env=clean_env(), capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("schema") / "new" / "dir"


@pytest.fixture(scope="module")
def outputs(written, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every `hitl schema` run the tests look at, side by side (each pays the CLI's start-up)."""
    a_file = tmp_path_factory.mktemp("schema") / "a_file"
    a_file.write_text("not a directory")
    runs = {
        "renewal": ("renewal",),
        "access_escalation": ("access_escalation",),
        "decision": ("decision",),
        "operator-action": ("operator-action",),
        "answer": ("answer",),
        "none": (),
        "bogus": ("bogus",),
        "all": ("--all", str(written)),
        "both": ("renewal", "--all", str(written)),
        "onto a file": ("--all", str(a_file)),
    }
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(run, HITL, "schema", *args) for name, args in runs.items()}
        return {name: future.result() for name, future in futures.items()}


def printed(outputs, run_name: str) -> str:
    result = outputs[run_name]
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("run_name", "file"),
    [
        ("renewal", "renewal_discount_exception.schema.json"),
        ("access_escalation", "access_escalation.schema.json"),
        ("decision", "decision.schema.json"),
        ("operator-action", "operator_action.schema.json"),
        ("answer", "answer.schema.json"),
    ],
)
def test_schema_of_a_name_prints_that_one_json_schema_as_committed(outputs, run_name, file):
    text = printed(outputs, run_name)
    assert text == (SCHEMAS / file).read_text()
    document = json.loads(text)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == "urn:hitl-temporal:schema:" + file.removesuffix(".schema.json")


def test_printed_renewal_schema_validates_the_examples_and_refuses_the_bogus_payload(outputs):
    check = jsonschema.Draft202012Validator(json.loads(printed(outputs, "renewal")))
    for name in (HUMAN_EXAMPLES[CaseKind.RENEWAL], AUTO_EXAMPLES[CaseKind.RENEWAL]):
        check.validate(json.loads((EXAMPLES / name).read_text()))
    assert not check.is_valid(BOGUS)


@pytest.mark.parametrize("kind", list(CaseKind))
def test_check_jsonschema_validates_every_example_and_refuses_the_bogus_payload(outputs, tmp_path, kind):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(
        printed(outputs, "renewal") if kind is CaseKind.RENEWAL else (SCHEMAS / f"{kind.value}.schema.json").read_text()
    )
    examples = [str(EXAMPLES / HUMAN_EXAMPLES[kind]), str(EXAMPLES / AUTO_EXAMPLES[kind])]
    good = run(CHECK_JSONSCHEMA, "--schemafile", str(schema_file), *examples)
    assert good.returncode == 0, good.stdout + good.stderr
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps(BOGUS))
    bad = run(CHECK_JSONSCHEMA, "--verbose", "--schemafile", str(schema_file), str(bogus))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Additional properties are not allowed" in bad.stdout and "'bogus'" in bad.stdout
    assert "'requester' is a required property" in bad.stdout


def test_schema_all_writes_one_file_per_payload_as_committed_and_prints_each_path(outputs, written):
    paths = printed(outputs, "all").splitlines()
    assert sorted(Path(p).name for p in paths) == sorted(path.name for path in SCHEMAS.iterdir())
    assert all(Path(p).parent == written for p in paths)
    for path in SCHEMAS.iterdir():
        assert (written / path.name).read_text() == path.read_text(), path.name


@pytest.mark.parametrize(
    ("run_name", "message"),
    [
        ("none", f"name a payload ({NAMES}), or write them all with --all DIR"),
        ("bogus", f"unknown schema 'bogus'; one of {NAMES}"),
        ("both", "give a NAME or --all DIR, not both"),
    ],
)
def test_schema_without_a_known_name_is_a_one_line_usage_error(outputs, run_name, message):
    result = outputs[run_name]
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"hitl: {message}"]


def test_schema_all_onto_a_file_is_a_one_line_error(outputs):
    result = outputs["onto a file"]
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1 and result.stderr.endswith("a_file: it is not a directory\n")


# Generators fetched from npm by npx; a machine that cannot reach npm skips the TypeScript test.
JSON2TS = ("npx", "--yes", "-p", "json-schema-to-typescript@15", "json2ts")
TSC = ("npx", "--yes", "-p", "typescript@5", "tsc")
NPM_UNREACHABLE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "network request", "getaddrinfo")


def npx(tmp_path: Path, *command: str) -> subprocess.CompletedProcess:
    if shutil.which("npx") is None:
        pytest.skip("npx is not installed")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and any(sign in result.stderr for sign in NPM_UNREACHABLE):
        pytest.skip(f"npm cannot fetch {command[3]}: {result.stderr.strip().splitlines()[-1]}")
    return result


def test_typescript_types_generated_from_the_schemas_take_every_example_and_refuse_the_bogus_payload(tmp_path):
    generated = npx(tmp_path, *JSON2TS, "-i", str(SCHEMAS), "-o", str(tmp_path / "types"))
    assert generated.returncode == 0, generated.stderr
    titles = {kind: json.loads((SCHEMAS / f"{kind.value}.schema.json").read_text())["title"] for kind in CaseKind}
    lines = [f'import type {{ {titles[kind]} }} from "./types/{kind.value}.schema";' for kind in CaseKind]
    lines += [
        f"export const {Path(name).stem}: {titles[kind]} = {(EXAMPLES / name).read_text()};"
        for table in (HUMAN_EXAMPLES, AUTO_EXAMPLES)
        for kind, name in table.items()
    ]
    decision = {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "Service-impact precedent"}
    lines.append('import type { Decision } from "./types/decision.schema";')
    lines.append(f"export const approve: Decision = {json.dumps(decision)};")
    lines.append("// @ts-expect-error: tsc must refuse the bogus payload (else: unused directive, and the check fails)")
    lines.append(f"export const bogus: RenewalDiscountRequest = {json.dumps(BOGUS)};")
    (tmp_path / "check.ts").write_text("\n".join(lines) + "\n")
    checked = npx(tmp_path, *TSC, "--noEmit", "--strict", "--skipLibCheck", "check.ts")
    assert checked.returncode == 0, checked.stdout + checked.stderr
