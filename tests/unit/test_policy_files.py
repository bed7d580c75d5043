"""Policy files: the bundled set loads, the newest version wins, and every bad file is named with its problem."""

from __future__ import annotations

import copy
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gates.cases import CaseKind
from gates.policy import GateLevel, PolicyError, bundled_policy_dir, load_policies, load_policy_file

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
