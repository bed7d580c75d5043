"""The reviewer directory as a versioned file: people, reviewer groups, operators, delegations.

Who may decide comes from this file (issue 11), not from code. Its owners edit it, give each
edit a new `version`, and load it with `hitl directory load`; the version in force is recorded
with every roster a case reads, so a decision can say which directory authorized it.

    directory: 1                 # the file format (only 1)
    version: "2026-12-02.1"      # this directory's own version
    people:      [{id, name, email, title, manager?, active?}]
    groups:      [{id, description, members: [person], serves: {gate: [level, ...]}}]   # levels 1-based
    operators:   [{person, gates: [gate, ...] | all}]
    delegations: [{from, to, start, end, reason}]                                        # UTC dates or times

A delegation's `start` and `end` are UTC; a date means a whole day, so `end: 2026-12-08` runs
through 8 December and the delegation ends at 2026-12-09 00:00 UTC (`ends_at` is excluded).

Pure (gates runs inside workflows): `parse_directory_file` validates bytes a caller has read and
names the line of every problem; `Directory` answers the questions a gate asks (`roster`).
Storing and reading the loaded versions is activities/store/directory.py's job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from pathlib import PurePath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
)

from gates.cases import PersonId
from gates.duties import in_force
from gates.messages import Delegation, Roster
from gates.text import neutralize, one_visible_line_problem
from gates.yaml_input import YamlFileKind, YamlInputError, line_of, parse_yaml

# A directory of 10,000 people is about 2 MB; the cap keeps a wrong file (a log, a dump) from being read whole.
MAX_DIRECTORY_FILE_BYTES = 4 * 1024 * 1024
DIRECTORY_FILE = YamlFileKind("directory", MAX_DIRECTORY_FILE_BYTES, "a directory file is at most 4 MiB")
GATE_NAMES: tuple[str, ...] = ("finance", "ops", "security")
GateName = Literal["finance", "ops", "security"]


class DirectoryError(ValueError):
    """A directory file that cannot be loaded: one line per problem, each naming the file and the line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _one_line(text: str) -> str:
    problem = one_visible_line_problem(text)
    if problem:
        raise ValueError(f"{problem}; directory text is one visible line")
    return text


def _email(text: str) -> str:
    local, at, domain = text.partition("@")
    if not (at and local and "." in domain.strip(".") and "@" not in domain and not any(c.isspace() for c in text)):
        raise ValueError("is not an email address like name@example.com")
    return _one_line(text)


def _version(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f'version is text: write it in quotes, e.g. version: "{value}"')
    return value


def _instant(value: Any, *, end: bool) -> Any:
    """A date (a whole day: its start, or for an end the start of the next day) or a datetime, in UTC."""
    if isinstance(value, str) and len(value) == 10:
        try:
            value = date.fromisoformat(value)
        except ValueError:
            return value  # pydantic says what is wrong
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value + timedelta(days=1 if end else 0), time(0), tzinfo=UTC)
    return value


def _operator_gates(value: Any) -> Any:
    if value == "all":
        return "all"
    if isinstance(value, list) and value and all(isinstance(g, str) and g in GATE_NAMES for g in value):
        if len(set(value)) != len(value):
            raise ValueError("names a gate twice")
        return list(value)
    raise ValueError(f"gates is `all` or a list of gate names ({', '.join(GATE_NAMES)})")


# One line of visible text each, of at most so many characters.
Name = Annotated[str, StringConstraints(min_length=1, max_length=120), AfterValidator(_one_line)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=160), AfterValidator(_one_line)]
Description = Annotated[str, StringConstraints(min_length=1, max_length=300), AfterValidator(_one_line)]
GroupId = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"^[a-z][a-z0-9_]*$")]
Level = Annotated[StrictInt, Field(ge=1, le=20)]
Start = Annotated[datetime, BeforeValidator(lambda v: _instant(v, end=False))]
End = Annotated[datetime, BeforeValidator(lambda v: _instant(v, end=True))]


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: PersonId
    name: Name
    email: Annotated[str, StringConstraints(min_length=3, max_length=254), AfterValidator(_email)]
    title: Title
    manager: PersonId | None = None
    active: StrictBool = True


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: GroupId
    description: Description
    members: list[PersonId] = Field(default_factory=list)
    serves: dict[GateName, list[Level]] = Field(
        default_factory=dict, description="Gate name -> the levels (1-based, as reviewers see them) this group may serve"
    )


class Operator(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    person: PersonId
    gates: Annotated[Literal["all"] | list[GateName], PlainValidator(_operator_gates)]

    def covers(self, gate: str | None) -> bool:
        return self.gates == "all" or (gate is not None and gate in self.gates)


class DirectoryDelegation(BaseModel):
    """`to` decides for `from` from `start` until `end` (see the module docstring for dates)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: PersonId = Field(alias="from")
    to: PersonId
    start: Start
    end: End
    reason: Description

    def as_message(self) -> Delegation:
        return Delegation(delegator=self.from_, delegate=self.to, starts_at=self.start, ends_at=self.end, reason=self.reason)


class Directory(BaseModel):
    """A validated directory file (or the document stored when it was loaded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    directory: Literal[1] = Field(description="The file format")
    version: Annotated[
        str, BeforeValidator(_version), StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")
    ]
    people: list[Person] = Field(min_length=1)
    groups: list[Group] = Field(default_factory=list)
    operators: list[Operator] = Field(default_factory=list)
    delegations: list[DirectoryDelegation] = Field(default_factory=list)

    # -- what is stored ----------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The directory as JSON (what `directory_versions.document` holds; `Directory.model_validate` reads it)."""
        return self.model_dump(mode="json", by_alias=True)

    @cached_property
    def sha256(self) -> str:
        """The content's hash, independent of the file's layout and comments: the same content loads as a no-op."""
        canonical = json.dumps(self.document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def counts(self) -> str:
        """`29 people, 9 groups, 4 operators, 1 delegation`."""
        sizes = [(len(self.people), "person", "people"), (len(self.groups), "group", "groups")]
        sizes += [(len(self.operators), "operator", "operators"), (len(self.delegations), "delegation", "delegations")]
        return ", ".join(f"{n:,} {one if n == 1 else many}" for n, one, many in sizes)

    # -- lookups ----------------------------------------------------------------------------------

    @cached_property
    def _people(self) -> dict[str, Person]:
        return {p.id: p for p in self.people}

    @cached_property
    def _groups(self) -> dict[str, Group]:
        return {g.id: g for g in self.groups}

    def person(self, person_id: str) -> Person | None:
        return self._people.get(person_id)

    def group(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    def groups_of(self, person_id: str) -> list[str]:
        """The groups `person_id` is listed in, active or not."""
        return [g.id for g in self.groups if person_id in g.members]

    def operator_roles(self, person_id: str) -> list[Operator]:
        return [o for o in self.operators if o.person == person_id]

    def delegations_of(self, person_id: str) -> list[DirectoryDelegation]:
        """Delegations from or to `person_id`, in file order."""
        return [d for d in self.delegations if person_id in (d.from_, d.to)]

    def operators_for(self, gate: str | None) -> list[str]:
        """Active people with an operator role for `gate` (a role for all gates counts; None: only those)."""
        found = [o.person for o in self.operators if o.covers(gate) and self._active(o.person)]
        return list(dict.fromkeys(found))

    def serving(self, gate: str | None) -> dict[str, list[int]]:
        """Every group serving `gate`, with the levels it may serve, 0-based (as the gate counts them)."""
        if gate is None:
            return {}
        return {
            g.id: sorted({level - 1 for level in levels})
            for g in self.groups
            for name, levels in g.serves.items()
            if name == gate and levels
        }

    def _active(self, person_id: str) -> bool:
        person = self._people.get(person_id)
        return person is not None and person.active

    def roster(self, groups: Sequence[str], people: Sequence[str] = (), gate: str | None = None, *, now: datetime) -> Roster:
        """What a gate needs to know about `groups` (and `people`, e.g. the requester) at `now`: the active
        members (an unknown group has none), the inactive ones apart (by id), the delegations not yet ended that
        involve any of them, the operators of `gate` and the groups serving it."""
        asked = list(dict.fromkeys(groups))
        members: dict[str, list[str]] = {}
        inactive: dict[str, list[str]] = {}
        for group_id in asked:
            listed = self._groups[group_id].members if group_id in self._groups else []
            members[group_id] = sorted(p for p in listed if self._active(p))
            if away := sorted(p for p in listed if not self._active(p)):
                inactive[group_id] = away
        involved = {p for listed in (*members.values(), *inactive.values()) for p in listed} | set(people)
        delegations = [d.as_message() for d in self.delegations if d.end > now and (d.from_ in involved or d.to in involved)]
        operators = self.operators_for(gate)
        # named: whom a gate shows (members who left are listed in `inactive`, by id, as before)
        named = {p for listed in members.values() for p in listed} | set(people) | set(operators)
        named |= {p for d in delegations for p in (d.delegator, d.delegate)}
        return Roster(
            members=members,
            people={p: self._people[p].name for p in sorted(named) if p in self._people},
            directory_version=self.version,
            inactive=inactive,
            delegations=delegations,
            operators=operators,
            serving=self.serving(gate),
            active_people=[p for p in dict.fromkeys(people) if self._active(p)],
        )


def narrowed_roster(roster: Roster, groups: Sequence[str], people: Sequence[str] = ()) -> Roster:
    """What `Directory.roster(groups, people)` answers, from a roster read for more groups (and the same
    people, gate and moment): a case reads the roster of every group its policy may need together with
    its precedents, before its evaluation says which groups its gate needs (LOCAL_GATHERS_PATCH)."""
    asked = list(dict.fromkeys(groups))
    members = {g: roster.members.get(g, []) for g in asked}
    inactive = {g: roster.inactive[g] for g in asked if g in roster.inactive}
    involved = {p for listed in (*members.values(), *inactive.values()) for p in listed} | set(people)
    delegations = [d for d in roster.delegations if d.delegator in involved or d.delegate in involved]
    named = {p for listed in members.values() for p in listed}
    if roster.directory_version is not None:  # without a directory file only members are named (the world_* tables)
        named |= set(people) | set(roster.operators) | {p for d in delegations for p in (d.delegator, d.delegate)}
    return roster.model_copy(
        update={
            "members": members,
            "people": {p: name for p, name in roster.people.items() if p in named},
            "inactive": inactive,
            "delegations": delegations,
        }
    )


def delegations_in_force(delegations: Iterable[Delegation], at: datetime) -> list[Delegation]:
    """The delegations running at `at` (from `starts_at`, until `ends_at` excluded): the gate's own rule."""
    return in_force(delegations, at)


# -- the file -------------------------------------------------------------------------------------

Problem = tuple[tuple[int | str, ...], str]


def _reference_problems(directory: Directory) -> list[Problem]:
    """What the models alone cannot see: ids used twice or unknown, a cycle of managers, delegations
    that cannot hold. Each with the location of the entry at fault."""
    problems: list[Problem] = []
    people: dict[str, int] = {}
    emails: dict[str, int] = {}
    for i, person in enumerate(directory.people):
        if person.id in people:
            problems.append((("people", i, "id"), f"person {person.id!r} is listed twice (first as people.{people[person.id]})"))
        people.setdefault(person.id, i)
        email = person.email.lower()
        if email in emails:
            problems.append((("people", i, "email"), f"email {person.email!r} is also people.{emails[email]}'s"))
        emails.setdefault(email, i)
    by_id = {p.id: p for p in directory.people}
    for i, person in enumerate(directory.people):
        if person.manager is not None and person.manager not in by_id:
            problems.append((("people", i, "manager"), f"no person {person.manager!r} in the file"))
    problems += _manager_cycles(directory, people)
    groups: dict[str, int] = {}
    for i, group in enumerate(directory.groups):
        if group.id in groups:
            problems.append((("groups", i, "id"), f"group {group.id!r} is listed twice (first as groups.{groups[group.id]})"))
        elif group.id in by_id:
            problems.append((("groups", i, "id"), f"{group.id!r} is both a person and a group; ids name one thing"))
        groups.setdefault(group.id, i)
        seen: set[str] = set()
        for j, member in enumerate(group.members):
            if member not in by_id:
                problems.append((("groups", i, "members", j), f"no person {member!r} in the file"))
            elif member in seen:
                problems.append((("groups", i, "members", j), f"{member!r} is listed twice in {group.id}"))
            seen.add(member)
    operators: dict[str, int] = {}
    for i, operator in enumerate(directory.operators):
        if operator.person not in by_id:
            problems.append((("operators", i, "person"), f"no person {operator.person!r} in the file"))
        elif operator.person in operators:
            problems.append(
                (
                    ("operators", i, "person"),
                    f"{operator.person!r} is listed twice (first as operators.{operators[operator.person]}); "
                    "list their gates once",
                )
            )
        operators.setdefault(operator.person, i)
    problems += _delegation_problems(directory, by_id)
    return problems


def _manager_cycles(directory: Directory, index: dict[str, int]) -> list[Problem]:
    """Each cycle of managers once, at the entry of its first person in file order."""
    manager = {p.id: p.manager for p in directory.people}
    settled: set[str] = set()
    problems: list[Problem] = []
    for person in directory.people:
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = person.id
        while current is not None and current in manager and current not in settled and current not in on_path:
            path.append(current)
            on_path.add(current)
            current = manager[current]
        if current is not None and current in on_path:
            cycle = path[path.index(current) :]
            first = min(cycle, key=index.__getitem__)
            turn = cycle.index(first)
            ordered = cycle[turn:] + cycle[:turn]
            chain = " -> ".join([*ordered, first])
            problems.append((("people", index[first], "manager"), f"managers form a cycle: {chain}"))
        settled.update(path)
    return problems


def _delegation_problems(directory: Directory, by_id: dict[str, Person]) -> list[Problem]:
    problems: list[Problem] = []
    for i, delegation in enumerate(directory.delegations):
        for field, person_id in (("from", delegation.from_), ("to", delegation.to)):
            if person_id not in by_id:
                problems.append((("delegations", i, field), f"no person {person_id!r} in the file"))
        if delegation.from_ == delegation.to:
            problems.append((("delegations", i, "to"), f"{delegation.to!r} cannot delegate to themselves"))
        elif delegation.to in by_id and not by_id[delegation.to].active:
            problems.append((("delegations", i, "to"), f"{delegation.to!r} is inactive and cannot decide for anyone"))
        if delegation.end <= delegation.start:
            problems.append(
                (
                    ("delegations", i, "end"),
                    f"ends ({_shown_instant(delegation.end)}) before it starts ({_shown_instant(delegation.start)})",
                )
            )
            continue
        for j, earlier in enumerate(directory.delegations[:i]):
            if earlier.from_ == delegation.from_ and earlier.start < delegation.end and delegation.start < earlier.end:
                problems.append(
                    (
                        ("delegations", i),
                        f"overlaps delegations.{j} ({earlier.from_} to {earlier.to}, {_shown_instant(earlier.start)} until "
                        f"{_shown_instant(earlier.end)}); a person delegates to one person at a time",
                    )
                )
    return problems


def _shown_instant(at: datetime) -> str:
    """`2026-12-09 00:00Z`."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def _where(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "directory"


def _validation_problems(err: ValidationError) -> list[tuple[tuple[int | str, ...], str, bool]]:
    """(location, message, points at a key) for every pydantic error, in words a file's owner reads."""
    found = []
    for error in err.errors(include_url=False):
        loc = tuple(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        at_key = False
        if error["type"] == "extra_forbidden":
            message, at_key = f"unknown key {str(loc[-1])!r}", True
        elif loc and loc[-1] == "[key]":
            loc, message, at_key = loc[:-1], f"the key: {message}", True
        elif error["type"] == "missing":
            message = f"missing {str(loc[-1])!r}"
        found.append((loc, message, at_key))
    return found


_KEYS = ", ".join(Directory.model_fields)


def parse_directory_file(data: bytes, path: PurePath | str) -> Directory:
    """Parse and validate a directory file's bytes (read by the caller: gates does no I/O; read at most
    MAX_DIRECTORY_FILE_BYTES + 1). Every problem is a line of the DirectoryError naming the file and the line."""
    shown = neutralize(str(path), keep_newlines=False)
    try:
        document = parse_yaml(data, DIRECTORY_FILE)
    except YamlInputError as err:
        raise DirectoryError([f"{shown}: cannot read directory: {err}"]) from err

    def at(loc: Sequence[int | str], message: str, *, key: bool = False) -> str:
        line = line_of(document.node, loc, key=key)
        where = f"line {line}: " if line is not None else ""
        return neutralize(f"{shown}: {where}{_where(loc)}: {message}", keep_newlines=False)

    if document.value is None:
        raise DirectoryError([f"{shown}: the file is empty; a directory file has the keys {_KEYS}"])
    if not isinstance(document.value, dict):
        raise DirectoryError([at((), f"expected a mapping with the keys {_KEYS}")])
    try:
        directory = Directory.model_validate(document.value)
    except ValidationError as err:
        raise DirectoryError([at(loc, message, key=key) for loc, message, key in _validation_problems(err)]) from err
    problems = _reference_problems(directory)
    if problems:
        raise DirectoryError([at(loc, message) for loc, message in problems])
    return directory
