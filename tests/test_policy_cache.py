"""`resolve_policy` keeps parsed policies between cases, and still sees every edit of the policy files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from activities.case_activities import PolicyCache
from gates.cases import CaseKind
from gates.policy import PolicyError, bundled_policy_dir


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for path in bundled_policy_dir().glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _touch_later(path: Path) -> None:
    """Move the mtime forward, so an edit within the filesystem's timestamp granularity still counts."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_unchanged_files_are_not_parsed_again(policy_dir: Path):
    cache = PolicyCache()
    first = cache.load(policy_dir)
    assert cache.load(policy_dir) is first


def test_a_new_version_and_an_edited_file_are_picked_up_by_the_next_case(policy_dir: Path):
    cache = PolicyCache()
    assert cache.load(policy_dir)[CaseKind.RENEWAL].ref == "discount_policy_v3_2"
    newer = policy_dir / "discount_policy_v3_3.yaml"
    newer.write_text((policy_dir / "discount_policy_v3_2.yaml").read_text().replace('version: "3.2"', 'version: "3.3"'))
    assert cache.load(policy_dir)[CaseKind.RENEWAL].ref == "discount_policy_v3_3"
    newer.write_text(newer.read_text().replace("Renewal discounts above 15%", "Renewal discounts above 12%"))
    _touch_later(newer)
    assert "above 12%" in cache.load(policy_dir)[CaseKind.RENEWAL].description


def test_a_broken_edit_fails_every_call_until_fixed(policy_dir: Path):
    cache = PolicyCache()
    cache.load(policy_dir)
    path = policy_dir / "discount_policy_v3_2.yaml"
    good = path.read_text()
    path.write_text(good + "\nrules: not-a-list\n")
    _touch_later(path)
    for _ in range(2):  # not the last good set from the cache
        with pytest.raises(PolicyError):
            cache.load(policy_dir)
    path.write_text(good)
    _touch_later(path)
    assert cache.load(policy_dir)[CaseKind.RENEWAL].ref == "discount_policy_v3_2"
