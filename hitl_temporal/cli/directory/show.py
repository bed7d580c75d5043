"""`hitl directory show [PERSON|GROUP]`: the directory in force, one person or one group in it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import click
from rich.table import Table

from activities.store.directory import LoadedDirectory, loaded_directory
from gates.directory import Directory, DirectoryDelegation, Group, Person
from gates.text import terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.directory.load import SCHEMA_BEHIND
from hitl_temporal.cli.render import plain

NO_DIRECTORY = (
    "no directory file loaded: reviewer groups come from the world_* tables as seeded; load one with `hitl directory load FILE`"
)


@click.command()
@state_dir_option
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@pass_app
def show(app: Application, name: str | None, as_json: bool) -> None:
    """The directory in force: a summary, or NAME, a person (their groups, manager, delegations,
    operator roles) or a group (its members, active or not, and the gate levels it serves)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        try:
            loaded = await loaded_directory(await app.database())
        except asyncpg.UndefinedTableError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        if loaded is None:
            click.echo(f"hitl: {NO_DIRECTORY}", err=True)
            return 1
        directory, now = loaded.directory, datetime.now(UTC)
        if name is None:
            document = summary_document(loaded, now)
            text = summary_text(loaded, now)
        elif (person := directory.person(name)) is not None:
            document, text = person_document(directory, person, now), person_text(directory, person, now)
        elif (group := directory.group(name)) is not None:
            document, text = group_document(directory, group), group_text(directory, group)
        else:
            shown = terminal_text(name, one_line=True)
            click.echo(f"hitl: no person or group {shown!r} in directory {directory.version}", err=True)
            return 1
        click.echo(json.dumps(document, indent=2, ensure_ascii=False) if as_json else text)
        return 0

    app.run(body)


# -- what each shows: a JSON document and the same as text ----------------------------------------


def _at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _state(delegation: DirectoryDelegation, now: datetime) -> str:
    if delegation.end <= now:
        return "ended"
    return "in force" if delegation.start <= now else "upcoming"


def _delegation_document(delegation: DirectoryDelegation, now: datetime) -> dict[str, Any]:
    return {**delegation.as_message().model_dump(mode="json"), "state": _state(delegation, now)}


def _delegation_text(delegation: DirectoryDelegation, now: datetime) -> str:
    reason = terminal_text(delegation.reason, one_line=True)
    return (
        f"{delegation.from_} -> {delegation.to}  {_at(delegation.start)} until {_at(delegation.end)}  "
        f"({_state(delegation, now)}): {reason}"
    )


def _serves_text(group: Group) -> str:
    return "; ".join(f"{gate} level {', '.join(map(str, sorted(set(levels))))}" for gate, levels in group.serves.items()) or "-"


def _operator_gates(directory: Directory, person_id: str) -> list[str] | str | None:
    roles = directory.operator_roles(person_id)
    if not roles:
        return None
    return "all" if any(r.gates == "all" for r in roles) else sorted({g for r in roles for g in r.gates})


def summary_document(loaded: LoadedDirectory, now: datetime) -> dict[str, Any]:
    directory = loaded.directory
    return {
        "version": directory.version,
        "sha256": loaded.sha256,
        "loaded_at": loaded.loaded_at.isoformat(),
        "loaded_by": loaded.loaded_by,
        "people": len(directory.people),
        "inactive": [p.id for p in directory.people if not p.active],
        "groups": {g.id: {"members": g.members, "serves": g.serves} for g in directory.groups},
        "operators": [o.model_dump(mode="json") for o in directory.operators],
        "delegations": [_delegation_document(d, now) for d in directory.delegations],
    }


def summary_text(loaded: LoadedDirectory, now: datetime) -> str:
    directory = loaded.directory
    inactive = sum(not p.active for p in directory.people)
    lines = [
        f"directory {directory.version}, loaded {_at(loaded.loaded_at)} by {terminal_text(loaded.loaded_by, one_line=True)}",
        f"{directory.counts()}; {inactive} inactive {'person' if inactive == 1 else 'people'}",
    ]
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("GROUP", "SERVES", "ACTIVE", "MEMBERS"):
        table.add_column(column)
    for group in directory.groups:
        active = sum(1 for m in group.members if (p := directory.person(m)) is not None and p.active)
        table.add_row(group.id, _serves_text(group), f"{active}/{len(group.members)}", ", ".join(group.members))
    lines += ["", plain(table)]
    if directory.operators:
        roles = [f"{o.person} ({'all gates' if o.gates == 'all' else ', '.join(o.gates)})" for o in directory.operators]
        lines += ["", "operators: " + ", ".join(roles)]
    if directory.delegations:
        lines += ["", "delegations:", *(f"  {_delegation_text(d, now)}" for d in directory.delegations)]
    return "\n".join(lines)


def person_document(directory: Directory, person: Person, now: datetime) -> dict[str, Any]:
    return {
        "version": directory.version,
        "person": person.model_dump(mode="json"),
        "groups": directory.groups_of(person.id),
        "reports": [p.id for p in directory.people if p.manager == person.id],
        "operator_gates": _operator_gates(directory, person.id),
        "delegations": [_delegation_document(d, now) for d in directory.delegations_of(person.id)],
    }


def person_text(directory: Directory, person: Person, now: datetime) -> str:
    def named(person_id: str) -> str:
        found = directory.person(person_id)
        return f"{person_id} ({terminal_text(found.name, one_line=True)})" if found else person_id

    gates = _operator_gates(directory, person.id)
    lines = [
        f"{person.id}: {terminal_text(person.name, one_line=True)}, {terminal_text(person.title, one_line=True)}",
        f"  email       {terminal_text(person.email, one_line=True)}",
        f"  active      {'yes' if person.active else 'no (decides nothing; left out of every roster)'}",
        f"  manager     {named(person.manager) if person.manager else '-'}",
        f"  groups      {', '.join(directory.groups_of(person.id)) or '-'}",
        f"  operator    {'all gates' if gates == 'all' else ', '.join(gates) if gates else 'no'}",
    ]
    delegations = directory.delegations_of(person.id)
    lines.append(f"  delegations {'-' if not delegations else ''}".rstrip())
    lines += [f"    {_delegation_text(d, now)}" for d in delegations]
    return "\n".join(lines)


def group_document(directory: Directory, group: Group) -> dict[str, Any]:
    members = [(m, directory.person(m)) for m in group.members]
    return {
        "version": directory.version,
        "group": group.model_dump(mode="json"),
        "members": [{"id": m, "name": p.name if p else None, "active": bool(p and p.active)} for m, p in members],
        "serving": {gate: sorted({level - 1 for level in levels}) for gate, levels in group.serves.items()},
    }


def group_text(directory: Directory, group: Group) -> str:
    lines = [
        f"{group.id}: {terminal_text(group.description, one_line=True)}",
        f"  serves   {_serves_text(group)}",
        "  members" + ("  -" if not group.members else ""),
    ]
    for member in group.members:
        person = directory.person(member)
        state = "active" if person and person.active else "inactive"
        lines.append(f"    {member:<24} {terminal_text(person.name, one_line=True) if person else '-':<24} {state}")
    return "\n".join(lines)
