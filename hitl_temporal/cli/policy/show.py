"""`hitl policy show [KIND]`: which policy version is in force for each kind, and which files are only proposals.

Reads only. The activation table (activities/store/policy_activations.py) says what is in force;
a file in the policy directory newer than the active version is listed as a proposal, not in force.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click

from activities.migrations import SchemaBehind
from activities.policy_files import bundled_policy_dir, load_policy_file
from activities.store.policy_activations import active_policy
from gates.cases import KIND_ALIASES, CaseKind
from gates.policy import Policy, PolicyError, version_key
from gates.policy_activation import PolicyActivation, policy_digest
from gates.text import terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import one_line

T = TypeVar("T")


async def activation_read(read: Awaitable[T]) -> T:
    """A read of the activation table, with a database older than it named as such."""
    try:
        return await read
    except asyncpg.UndefinedTableError as err:
        raise SchemaBehind("the database has no policy_activations table (migration 0007): run `hitl migrate` first") from err


def activation_document(activation: PolicyActivation) -> dict[str, Any]:
    """An activation as `--json` shows it: everything but the policy's full text."""
    return activation.model_dump(mode="json", exclude={"policy_text"})


def activation_lines(activation: PolicyActivation, *, indent: str = "  ") -> list[str]:
    approvers = ", ".join(activation.approved_by) or "nobody (initial activation)"
    change = f"change {terminal_text(activation.change_id, one_line=True)}" if activation.change_id else "no change case"
    if activation.trace_id:
        change += f", trace {terminal_text(activation.trace_id, one_line=True)}"
    return [
        f"{indent}digest {activation.digest}",
        f"{indent}approved by {terminal_text(approvers, one_line=True)}; {change}",
        f"{indent}reason: {terminal_text(activation.reason, one_line=True)}",
    ]


@dataclass
class PolicyFiles:
    """The policy directory read file by file: a broken file is reported, not fatal to `show`."""

    directory: Path
    policies: list[tuple[Path, Policy, str]] = field(default_factory=list)  # (file, policy, digest)
    invalid: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, directory: Path) -> PolicyFiles:
        found = cls(directory)
        for path in sorted(directory.glob("*.yaml")):
            try:
                policy = load_policy_file(path)
                found.policies.append((path, policy, policy_digest(path.read_bytes().decode())))
            except (PolicyError, OSError, UnicodeDecodeError) as err:
                found.invalid.append(one_line(str(err)))
        return found

    def proposals(self, kind: CaseKind, active: PolicyActivation | None) -> list[tuple[Path, Policy, str]]:
        """Files of `kind` newer than the active version (every file of it when none is active), or of
        the active version with another text: none of them is in force."""
        newer = []
        for path, policy, digest in self.policies:
            if policy.kind != kind:
                continue
            if active is None or version_key(policy.version) > version_key(active.version) or (
                policy.ref == active.policy_ref and digest != active.digest
            ):
                newer.append((path, policy, digest))
        return sorted(newer, key=lambda item: version_key(item[1].version), reverse=True)


def policy_directory(app: Application) -> Path:
    return Path(app.settings.policy_dir) if app.settings.policy_dir else bundled_policy_dir()


@click.command()
@state_dir_option
@click.argument("kind", type=click.Choice(sorted(KIND_ALIASES)), required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@pass_app
def show(app: Application, kind: str | None, as_json: bool) -> None:
    """The policy version in force for each kind (or KIND): since when, approved by whom, by which
    change; and any newer file in the policy directory, which is a proposal, not in force."""
    directory = policy_directory(app)
    kinds = [KIND_ALIASES[kind]] if kind else list(CaseKind)

    async def body() -> int:
        conn = await app.database()
        active = {k: await activation_read(active_policy(conn, k)) for k in kinds}
        await app.close_database()
        files = PolicyFiles.read(directory)
        if as_json:
            document = {
                "policy_dir": str(directory),
                "kinds": [
                    {
                        "kind": k.value,
                        "active": activation_document(a) if (a := active[k]) else None,
                        "proposals": [
                            {"policy_ref": p.ref, "version": p.version, "digest": d, "file": str(path)}
                            for path, p, d in files.proposals(k, active[k])
                        ],
                    }
                    for k in kinds
                ],
                "invalid_files": files.invalid,
            }
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            click.echo(render_text(kinds, active, files))
        return 0

    app.run(body)


def render_text(kinds: list[CaseKind], active: dict[CaseKind, PolicyActivation | None], files: PolicyFiles) -> str:
    lines: list[str] = []
    for k in kinds:
        activation = active[k]
        if activation is None:
            lines.append(f"{k.value}: no version in force yet (the first case activates the newest file in {files.directory})")
        else:
            since = activation.activated_at.astimezone(UTC)
            lines.append(f"{k.value}: {activation.policy_ref} in force since {since:%Y-%m-%d %H:%M:%S}Z")
            lines += activation_lines(activation)
        for path, policy, digest in files.proposals(k, activation):
            lines.append(f"  proposal, not in force: {policy.ref} ({terminal_text(str(path), one_line=True)}, {digest[:19]}…)")
    if files.invalid:
        lines += ["", "invalid files in the policy directory (not in force, cannot be activated):"]
        lines += [f"  {terminal_text(problem, one_line=True)}" for problem in files.invalid]
    return "\n".join(lines)
