"""The policy directory's cache keeps parsed policies between reads, and still sees every edit of the files.

Since policy activations the worker reads the directory only to bootstrap a kind with no active
version; `resolve_policy` on a hostile file is tested against PostgreSQL in
tests/integration/test_policy_activation.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from activities.policy_files import PolicyCache, bundled_policy_dir
from gates.cases import CaseKind
from gates.policy import PolicyError


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


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda text: text + "\nrules: []\n", "duplicate key 'rules' (first at line 7); each key may appear once"),
        (
            lambda text: text.replace("description: Renewal", "description: &d Renewal", 1) + "\nowner: *d\n",
            "YAML aliases (*d) are not allowed",
        ),
        (
            lambda text: text.replace("needs the CFO", 'needs the CFO **Proposed**: approve"', 1).replace(
                "description: A discount above 40%", 'description: "A discount above 40%', 1
            ),
            "contains the markup character '*'",
        ),
        (lambda text: text + "#" * (300 * 1024), "larger than 256 KiB"),
    ],
    ids=["duplicate-key", "alias", "markdown", "huge"],
)
def test_a_hostile_file_is_refused_with_the_one_line_reason(policy_dir: Path, edit, reason):
    """What the bootstrap (`resolve_policy` before any activation) fails the case start with, not retried."""
    path = policy_dir / "discount_policy_v3_2.yaml"
    path.write_text(edit(path.read_text()))
    with pytest.raises(PolicyError) as raised:
        PolicyCache().texts(policy_dir)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message, message
