"""Bench copies of the policy files, read by the worker's `resolve_policy` through HITL_POLICY_DIR.

The worker reads the directory on every `resolve_policy` call and each case keeps the policy it
resolved at its start, so the bench rewrites the files between phases: first an exact copy of the
bundled policies, then copies with seconds-long gate delays for the timeout path and the scale phase.
File names, policy ids and versions stay those of the bundled files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from activities.policy_files import bundled_policy_dir, load_policies, newest_policy_texts


def write_bundled(directory: Path, source: Path | None = None) -> None:
    """An exact copy of the bundled policies (`source`, default gates/policies/)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    for path in sorted((source or bundled_policy_dir()).glob("*.yaml")):
        shutil.copyfile(path, directory / path.name)
    load_policies(directory)


def write_delays(
    directory: Path,
    levels: list[tuple[str, str]] | None,
    first_level: tuple[str, str] | None = None,
    source: Path | None = None,
) -> None:
    """Copies whose gate delays are replaced: `levels` gives (remind_after, escalate_after) for every level
    (missing levels keep the bundled values); `first_level` replaces only level 0."""
    write_bundled(directory, source)
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for index, level in enumerate(data["gate"]["levels"]):
            if levels is not None and index < len(levels):
                level["remind_after"], level["escalate_after"] = levels[index]
            if first_level is not None and index == 0:
                level["remind_after"], level["escalate_after"] = first_level
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_policies(directory)  # still valid


async def activate_files(database_url: str, directory: Path, reason: str) -> None:
    """Put the files just written in force: since policy activations (migration 0007) a rewritten file
    changes nothing until activated. The first write needs none: the first case activates it."""
    import asyncpg

    from activities.store.policy_activations import activate

    conn = await asyncpg.connect(database_url)
    try:
        for _, text in newest_policy_texts(directory).values():
            await activate(conn, policy_text=text, approved_by=[], reason=reason, change_id=None, trace_id=None)
    finally:
        await conn.close()
