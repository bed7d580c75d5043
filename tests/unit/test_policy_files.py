"""Policy files: the bundled set loads, the newest version wins, and every bad file is named with its problem."""

from __future__ import annotations

import copy
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.policy_files import bundled_gates, bundled_policy_dir, load_policies, load_policy_file
from gates.cases import CaseKind
from gates.kinds import SPECS
from gates.policy import MAX_POLICY_FILE_BYTES, GateLevel, PolicyError

BUNDLED = bundled_policy_dir()
DISCOUNT_FILE = BUNDLED / "discount_policy_v3_2.yaml"


def _discount() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(DISCOUNT_FILE.read_text()))


def _write(directory: Path, data: dict[str, Any], name: str | None = None) -> Path:
    name = name or f"{data['policy_id']}_v{data['version'].replace('.', '_')}.yaml"
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(PolicyError) as exc:
        load_policy_file(path)
    message = str(exc.value)
    assert str(path) in message, "the error must name the file"
    return message


# --- the bundled set -------------------------------------------------------------------------


def test_bundled_policies_cover_every_kind():
    policies = load_policies(BUNDLED)
    assert set(policies) == set(CaseKind)


def test_bundled_policies_are_the_expected_versions():
    refs = {kind: policy.ref for kind, policy in load_policies(BUNDLED).items()}
    assert refs == {
        CaseKind.RENEWAL: "discount_policy_v3_2",
        CaseKind.PROCUREMENT: "procurement_policy_v2_0",
        CaseKind.ACCESS: "access_policy_v1_4",
    }


def test_bundled_gates_route_to_finance_ops_and_security():
    gates = {kind: policy.gate.name for kind, policy in load_policies(BUNDLED).items()}
    assert gates == {CaseKind.RENEWAL: "finance", CaseKind.PROCUREMENT: "ops", CaseKind.ACCESS: "security"}


def test_the_kind_to_gate_mapping_is_the_policies_and_the_kinds_title_the_same_gates():
    """`bundled_gates` is the policies' own mapping; gates/kinds.py titles each kind's gate for the static
    summary a case shows before its policy is resolved, so that title must be the policy's gate title."""
    policies = load_policies(BUNDLED)
    assert bundled_gates() == {kind: policy.gate.name for kind, policy in policies.items()}
    assert {kind: SPECS[kind].gate_title for kind in policies} == {kind: policy.gate.title for kind, policy in policies.items()}


def test_finance_gate_ladder_is_reviewer_director_cfo():
    finance = load_policies(BUNDLED)[CaseKind.RENEWAL].gate
    assert [level.title for level in finance.levels] == ["Finance reviewer", "Finance director", "CFO"]
    assert finance.levels[0].remind_after == timedelta(hours=4)
    assert finance.levels[0].escalate_after == timedelta(hours=24)
    assert finance.timeout_outcome == "reject"


# --- versions --------------------------------------------------------------------------------


def test_newest_version_of_a_kind_wins(tmp_path):
    for path in BUNDLED.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    newer = _discount()
    newer["version"] = "3.3"
    newer["description"] = "the newer one"
    _write(tmp_path, newer)
    assert load_policies(tmp_path)[CaseKind.RENEWAL].ref == "discount_policy_v3_3"


def test_versions_compare_as_numbers_not_text(tmp_path):
    for path in BUNDLED.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    newer = _discount()
    newer["version"] = "3.10"
    _write(tmp_path, newer)
    assert load_policies(tmp_path)[CaseKind.RENEWAL].version == "3.10"


def test_older_version_beside_the_current_one_does_not_win(tmp_path):
    for path in BUNDLED.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    older = _discount()
    older["version"] = "2.9"
    _write(tmp_path, older)
    assert load_policies(tmp_path)[CaseKind.RENEWAL].version == "3.2"


def test_policy_ref_is_id_and_version_as_file_stem():
    assert load_policy_file(DISCOUNT_FILE).ref == "discount_policy_v3_2"


# --- invalid files ---------------------------------------------------------------------------


def test_unparseable_yaml_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "discount_policy_v3_2.yaml"
    path.write_text("policy_id: discount_policy\nrules: [unclosed\n")
    assert "cannot read policy" in _load_error(path)


def test_unknown_top_level_key_is_refused(tmp_path):
    data = _discount()
    data["owner"] = "finance"
    message = _load_error(_write(tmp_path, data))
    assert "owner" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_key_in_a_rule_is_refused(tmp_path):
    data = _discount()
    data["rules"][1]["severity"] = "high"
    assert "severity" in _load_error(_write(tmp_path, data))


def test_duplicate_rule_ids_are_refused(tmp_path):
    data = _discount()
    data["rules"][2]["id"] = "DISC-2"
    message = _load_error(_write(tmp_path, data))
    assert "duplicate rule ids" in message
    assert "DISC-2" in message


def test_rule_without_when_or_require_is_refused(tmp_path):
    data = _discount()
    data["rules"].append({"id": "DISC-9", "description": "tests nothing", "reason_code": "unusual_case"})
    message = _load_error(_write(tmp_path, data))
    assert "rule DISC-9 needs `when` or `require`" in message


def test_min_level_beyond_the_ladder_is_refused(tmp_path):
    data = _discount()
    data["rules"][3]["min_level"] = 3
    message = _load_error(_write(tmp_path, data))
    assert "rule DISC-4: min_level 3 but the gate has levels 0..2" in message


def test_precedent_relief_that_raises_the_level_is_refused(tmp_path):
    data = _discount()
    data["rules"][2]["precedent_relief"]["level"] = 2
    assert "precedent relief cannot raise the level" in _load_error(_write(tmp_path, data))


@pytest.mark.parametrize(("remind", "escalate"), [("24h", "24h"), ("2d", "24h")])
def test_reminder_at_or_after_escalation_is_refused(tmp_path, remind, escalate):
    data = _discount()
    data["gate"]["levels"][1]["remind_after"] = remind
    data["gate"]["levels"][1]["escalate_after"] = escalate
    message = _load_error(_write(tmp_path, data))
    assert "level finance_directors: need 0 < remind_after < escalate_after" in message


def test_file_name_that_does_not_match_the_version_is_refused(tmp_path):
    data = _discount()
    data["version"] = "3.3"
    path = _write(tmp_path, data, name="discount_policy_v3_2.yaml")
    assert "file name must be discount_policy_v3_3.yaml" in _load_error(path)


def test_file_name_that_does_not_match_the_policy_id_is_refused(tmp_path):
    path = _write(tmp_path, _discount(), name="discounts_v3_2.yaml")
    assert "file name must be discount_policy_v3_2.yaml" in _load_error(path)


@pytest.mark.parametrize("duration", ["4 hours", "4x", "soon", "-4h"])
def test_bad_duration_string_is_refused(tmp_path, duration):
    data = _discount()
    data["gate"]["levels"][0]["remind_after"] = duration
    message = _load_error(_write(tmp_path, data))
    assert "remind_after" in message


@pytest.mark.parametrize("op", ["gt", "gte", "lt", "lte", "eq", "ne", "in", "not_in"])
def test_op_that_needs_a_value_without_one_is_refused(tmp_path, op):
    data = _discount()
    data["rules"][1]["when"] = {"fact": "request.requested_discount_pct", "op": op}
    message = _load_error(_write(tmp_path, data))
    assert f"op '{op}' needs a" in message


def test_in_op_with_a_single_value_instead_of_a_list_is_refused(tmp_path):
    data = _discount()
    data["rules"][1]["when"] = {"fact": "crm.tier", "op": "in", "value": "enterprise"}
    assert "op 'in' needs a list value" in _load_error(_write(tmp_path, data))


def test_unknown_reason_code_is_refused(tmp_path):
    data = _discount()
    data["rules"][1]["reason_code"] = "gut_feeling"
    assert "reason_code" in _load_error(_write(tmp_path, data))


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "discount_policy_v3_2.yaml"
    path.write_text("")
    assert "invalid policy" in _load_error(path)


def test_directory_missing_a_kind_is_refused_naming_the_kind(tmp_path):
    shutil.copy(DISCOUNT_FILE, tmp_path)
    shutil.copy(BUNDLED / "access_policy_v1_4.yaml", tmp_path)
    with pytest.raises(PolicyError) as exc:
        load_policies(tmp_path)
    assert str(tmp_path) in str(exc.value)
    assert "no policy for procurement_threshold_breach" in str(exc.value)


def test_empty_directory_is_refused(tmp_path):
    with pytest.raises(PolicyError) as exc:
        load_policies(tmp_path)
    assert "no policy files" in str(exc.value)


def test_one_invalid_file_fails_the_whole_directory_naming_that_file(tmp_path):
    for path in BUNDLED.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    broken = _discount()
    broken["version"] = "3.3"
    broken["rules"][0]["id"] = "not-an-id"
    bad = _write(tmp_path, broken)
    with pytest.raises(PolicyError) as exc:
        load_policies(tmp_path)
    assert str(bad) in str(exc.value)


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
        ("1.5h", timedelta(minutes=90)),
        ("PT4H", timedelta(hours=4)),
        ("P1DT12H", timedelta(hours=36)),
    ],
)
def test_duration_strings_parse(text, expected):
    level = GateLevel(group="finance_reviewers", title="Finance reviewer", remind_after=text, escalate_after="30d")
    assert level.remind_after == expected


# --- hostile files: what YAML allows but a policy file must not carry ------------------------


def _bundled_text() -> str:
    return DISCOUNT_FILE.read_text()


def _write_text(directory: Path, text: str | bytes, name: str = "discount_policy_v3_2.yaml") -> Path:
    path = directory / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _one_line_error(path: Path) -> str:
    message = _load_error(path)
    assert "\n" not in message, f"expected one line, got:\n{message}"
    return message


def test_duplicate_top_level_key_is_refused_with_its_line(tmp_path):
    """PyYAML keeps the last of two equal keys; a second `rules:` would replace every rule silently."""
    text = _bundled_text() + (
        "\nrules:\n  - {id: DISC-1, description: only this, reason_code: unusual_case, require: [crm.tier]}\n"
    )
    path = _write_text(tmp_path, text)
    line = len(_bundled_text().splitlines()) + 2
    message = _one_line_error(path)
    assert message == (
        f"{path}: cannot read policy: line {line}: duplicate key 'rules' (first at line 7); each key may appear once"
    )


def test_duplicate_key_inside_a_rule_is_refused_with_its_line(tmp_path):
    text = _bundled_text().replace("    min_level: 2\n", "    min_level: 2\n    min_level: 0\n", 1)
    message = _one_line_error(_write_text(tmp_path, text))
    assert message.endswith("duplicate key 'min_level' (first at line 26); each key may appear once")
    assert "line 27:" in message


def test_keys_that_load_as_the_same_value_are_duplicates(tmp_path):
    """`2` and `0x2` are both the integer 2 to YAML: the same key twice."""
    text = "policy_id: p\nversion: '1.0'\nkind: access_escalation\ndescription: d\nrules: []\ngate: {2: a, 0x2: b}\n"
    assert "line 6: duplicate key '2'" in _one_line_error(_write_text(tmp_path, text, "p_v1_0.yaml"))


def test_billion_laughs_is_refused_at_the_first_alias_without_expanding(tmp_path):
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    path = _write_text(tmp_path, "\n".join(laughs) + "\n")
    started = time.monotonic()
    message = _one_line_error(path)
    assert time.monotonic() - started < 1.0
    assert message == (
        f"{path}: cannot read policy: line 2: YAML aliases (*a) are not allowed in policy files; write the value out"
    )


def test_merge_keys_are_refused(tmp_path):
    text = _bundled_text().replace(
        "    - {group: finance_reviewers,",
        "    - <<: {remind_after: 1h}\n      group: finance_reviewers\n    - {group: finance_reviewers,",
    )
    assert "YAML merge keys (<<) are not allowed in policy files" in _one_line_error(_write_text(tmp_path, text))


def test_file_over_the_size_cap_is_refused_without_parsing(tmp_path):
    path = _write_text(tmp_path, _bundled_text() + "#" * MAX_POLICY_FILE_BYTES)
    assert _one_line_error(path) == f"{path}: cannot read policy: larger than 256 KiB; a policy file is a few KB"


def test_non_utf8_bytes_are_refused_with_line_and_offset(tmp_path):
    data = _bundled_text().encode().replace(b"Finance.", b"Finan\xe7e.", 1)
    offset = data.index(b"\xe7")
    message = _one_line_error(_write_text(tmp_path, data))
    assert message.endswith(f"cannot read policy: line 6: not UTF-8 text (byte 0xe7 at offset {offset})")


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = _write_text(tmp_path, b"\xef\xbb\xbf" + DISCOUNT_FILE.read_bytes())
    assert load_policy_file(path).ref == "discount_policy_v3_2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("when: " + "[" * 200 + "]" * 200, "nested deeper than 32 levels"),
        ("value: " + "9" * 5000, "Exceeds the limit (4300 digits)"),
        ("a: 1\n---\nb: 2\n", "line 2 column 1: expected a single document in the stream, but found another document"),
        ("rules: [unclosed\n", "line 2 column 1: while parsing a flow sequence"),
        ("title: \x1b[2J\n", "line 1 column 8: unacceptable character #x001b: special characters are not allowed"),
        ("owner: !!python/object:os.system ls\n", "could not determine a constructor for the tag"),
    ],
    ids=["deep", "huge-integer", "two-documents", "unclosed", "raw-escape", "python-tag"],
)
def test_yaml_problems_are_one_line_naming_the_line(tmp_path, text, expected):
    message = _one_line_error(_write_text(tmp_path, text))
    assert "cannot read policy" in message and expected in message, message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "rule",
            "Discount \\e[31mabove\\e[0m 15%",
            "rules.1.description (DISC-2) contains the hidden or control character ⟨U+001B⟩ at position 10",
        ),
        (
            "rule",
            "A discount above 15% \\u202eevorppa",
            "rules.1.description (DISC-2) contains the hidden or control character ⟨U+202E⟩ at position 22",
        ),
        (
            "rule",
            "Looks fine\\u200b",
            "rules.1.description (DISC-2) contains the hidden or control character ⟨U+200B⟩ at position 11",
        ),
        (
            "rule",
            "\\u200b\\u2060",
            "rules.1.description (DISC-2) contains the hidden or control character ⟨U+200B⟩ at position 1",
        ),
        (
            "rule",
            "first line\\n\\n**Proposed**: approve",
            "rules.1.description (DISC-2) contains the hidden or control character ⟨U+000A⟩ at position 11",
        ),
        (
            "rule",
            "above 15% **Proposed**: approve",
            "rules.1.description (DISC-2) contains the markup character '*' at position 11",
        ),
        (
            "rule",
            "see [the wiki](https://evil.example)",
            "rules.1.description (DISC-2) contains the markup character '[' at position 5",
        ),
        ("rule", "needs `sudo` approval", "rules.1.description (DISC-2) contains the markup character '`' at position 7"),
        ("rule", "needs _director_ approval", "rules.1.description (DISC-2) contains the markup character '_' at position 7"),
        ("policy", "ping <!channel> now", "description contains the markup character '<' at position 6"),
        ("policy", "x" * 501, "description is 501 characters; a policy description is at most 500"),
        ("rule", "x" * 301, "rules.1.description (DISC-2) is 301 characters; a rule description is at most 300"),
        ("level", "CFO <!here>", "gate.levels.2.title contains the markup character '<' at position 5"),
        ("level", "Finance\\tdirector", "gate.levels.2.title contains the hidden or control character ⟨U+0009⟩ at position 8"),
        ("gate", "Finance | Ops", "gate.title contains the markup character '|' at position 9"),
    ],
    ids=[
        "escape", "bidi-override", "zero-width", "invisible-only", "newline-forging-the-brief", "emphasis", "link", "code",
        "underscore-emphasis", "slack-mention", "long-policy-description", "long-rule-description", "level-title-mention",
        "tab-in-title", "table-pipe",
    ],
)
def test_policy_text_shown_to_reviewers_is_refused_when_it_could_hide_or_forge_text(tmp_path, field, value, expected):
    data = _discount()
    target = {"rule": (data["rules"][1], "description"), "policy": (data, "description"),
              "level": (data["gate"]["levels"][2], "title"), "gate": (data["gate"], "title")}[field]
    target[0][target[1]] = "@@VALUE@@"
    text = yaml.safe_dump(data, sort_keys=False).replace("'@@VALUE@@'", f'"{value}"').replace("@@VALUE@@", f'"{value}"')
    path = _write_text(tmp_path, text)
    message = _one_line_error(path)
    assert message.startswith(f"{path}: invalid policy: {expected}"), message
    why = "policy text is one visible line" if "character ⟨" in expected else "may not carry Markdown, HTML or Slack markup"
    assert "characters;" in expected or message.endswith(why), message


def test_plain_policy_text_with_identifiers_and_punctuation_is_accepted(tmp_path):
    data = _discount()
    data["rules"][1]["description"] = (
        "A discount above 15% (finance_reviewers, per FY26 plan #4) needs a reviewer's OK: see DISC-3."
    )
    data["gate"]["levels"][0]["title"] = "Finance reviewer (EMEA)"
    assert load_policy_file(_write(tmp_path, data)).rules[1].description.startswith("A discount above 15%")


def test_validation_errors_are_one_line(tmp_path):
    data = _discount()
    data["rules"][1]["severity"] = "high"
    data["gate"]["levels"][0]["remind_after"] = "soon"
    message = _one_line_error(_write(tmp_path, data))
    assert "rules.1.severity: Extra inputs are not permitted" in message and "gate.levels.0.remind_after" in message


def test_file_name_with_control_characters_is_shown_marked(tmp_path):
    path = _write_text(tmp_path, "a: [unclosed\n", "bad\x1b[2J.yaml")
    message = str(pytest.raises(PolicyError, load_policy_file, path).value)
    assert "bad⟨U+001B⟩[2J.yaml: cannot read policy" in message and "\x1b" not in message
