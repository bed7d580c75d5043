"""The directory file: what loads, what is refused (one line per problem, naming the file and the line),
and what a gate learns from a loaded directory."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import pytest

from gates.directory import (
    MAX_DIRECTORY_FILE_BYTES,
    Directory,
    DirectoryError,
    delegations_in_force,
    narrowed_roster,
    parse_directory_file,
)
from gates.messages import Delegation, Roster

PATH = "team/directory.yaml"

# Line numbers matter: the tests below name them.
BASE = """\
directory: 1
version: "2026-12-02.1"
people:
  - id: ana
    name: Ana Costa
    email: ana@example.com
    title: Analyst
    manager: omar
  - id: ben
    name: Ben Okafor
    email: ben@example.com
    title: Analyst
    manager: omar
  - id: omar
    name: Omar Haddad
    email: omar@example.com
    title: Director
  - id: greta
    name: Greta Olsen
    email: greta@example.com
    title: Left the company
    active: false
groups:
  - id: finance_reviewers
    description: First review
    members: [ana, ben, greta]
    serves: {finance: [1]}
  - id: finance_directors
    description: Escalations
    members: [omar]
    serves: {finance: [2, 3], ops: [2]}
operators:
  - {person: omar, gates: [finance]}
  - {person: ben, gates: all}
delegations:
  - {from: ana, to: ben, start: 2026-12-01, end: 2026-12-08, reason: out of office}
"""


def parse(text: str) -> Directory:
    return parse_directory_file(text.encode(), PATH)


def problems(text: str) -> list[str]:
    with pytest.raises(DirectoryError) as caught:
        parse(text)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_the_demo_directory_parses_with_every_reviewer_group_of_the_policies():
    data = resources.files("demo").joinpath("directory.yaml").read_bytes()
    directory = parse_directory_file(data, "demo/directory.yaml")
    assert directory.counts() == "29 people, 9 groups, 4 operators, 1 delegation"
    assert directory.serving("finance") == {"finance_reviewers": [0], "finance_directors": [1], "cfo_office": [2]}
    assert directory.operators_for("ops") == ["ops_cos_ivy", "it_admin_kai"]
    assert not delegations_in_force([d.as_message() for d in directory.delegations], datetime(2026, 12, 2, tzinfo=UTC))


def test_a_valid_file_loads_with_dates_as_whole_utc_days():
    directory = parse(BASE)
    assert directory.version == "2026-12-02.1"
    (delegation,) = directory.delegations
    assert delegation.start == datetime(2026, 12, 1, tzinfo=UTC)
    assert delegation.end == datetime(2026, 12, 9, tzinfo=UTC), "end: 2026-12-08 runs through 8 December"


def test_layout_and_comments_do_not_change_the_content_hash_but_content_does():
    reformatted = "# a comment\n" + BASE.replace("members: [omar]", "members:\n      - omar")
    assert parse(reformatted).sha256 == parse(BASE).sha256
    assert parse(BASE.replace("title: Director", "title: Finance Director")).sha256 != parse(BASE).sha256


def test_the_stored_document_reads_back_to_the_same_directory():
    directory = parse(BASE)
    again = Directory.model_validate(directory.document())
    assert again == directory and again.sha256 == directory.sha256
    assert again.delegations[0].end == datetime(2026, 12, 9, tzinfo=UTC), "a stored end is not moved a day again"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    title: Director\n", "    title: Director\n    office: 3\n", "line 18: people.2.office: unknown key 'office'"),
        (
            "    manager: omar\n  - id: ben",
            "    manager: nobody\n  - id: ben",
            "line 8: people.0.manager: no person 'nobody' in the file",
        ),
        (
            "people:\n",
            "people:\n  - {id: omar, name: O, email: o2@example.com, title: T}\n",
            "line 15: people.3.id: person 'omar' is listed twice (first as people.0)",
        ),
        (
            "email: ben@example.com",
            "email: ana@example.com",
            "line 11: people.1.email: email 'ana@example.com' is also people.0's",
        ),
        (
            "email: ben@example.com",
            "email: ben.example.com",
            "line 11: people.1.email: is not an email address like name@example.com",
        ),
        (
            "  - id: finance_directors",
            "  - id: finance_reviewers",
            "line 28: groups.1.id: group 'finance_reviewers' is listed twice",
        ),
        ("members: [ana, ben, greta]", "members: [ana, bob, greta]", "line 26: groups.0.members.1: no person 'bob' in the file"),
        ("members: [omar]", "members: [omar, omar]", "line 30: groups.1.members.1: 'omar' is listed twice in finance_directors"),
        ("{person: omar, gates: [finance]}", "{person: olga, gates: [finance]}", "line 33: operators.0.person: no person 'olga'"),
        ("gates: [finance]}", "gates: [marketing]}", "line 33: operators.0.gates: gates is `all` or a list of gate names"),
        ("serves: {finance: [1]}", "serves: {marketing: [1]}", "line 27: groups.0.serves.marketing: the key: Input should be"),
        (
            "serves: {finance: [1]}",
            "serves: {finance: [0]}",
            "line 27: groups.0.serves.finance.0: Input should be greater than or",
        ),
        ("to: ben, start", "to: ana, start", "line 36: delegations.0.to: 'ana' cannot delegate to themselves"),
        ("to: ben, start", "to: greta, start", "line 36: delegations.0.to: 'greta' is inactive and cannot decide for anyone"),
        ("to: ben, start", "to: zed, start", "line 36: delegations.0.to: no person 'zed' in the file"),
        (
            "end: 2026-12-08",
            "end: 2026-11-20",
            "line 36: delegations.0.end: ends (2026-11-21 00:00Z) before it starts (2026-12-01 00:00Z)",
        ),
        (
            "reason: out of office}",
            'reason: "away\\u202eevorppa"}',
            "line 36: delegations.0.reason: contains the hidden or control",
        ),
        ("name: Ana Costa", 'name: "Ana\\nCosta"', "line 5: people.0.name: contains the hidden or control character ⟨U+000A⟩"),
        (
            "description: First review",
            "description: ''",
            "line 25: groups.0.description: String should have at least 1 character",
        ),
        (
            'version: "2026-12-02.1"',
            "version: 2026-12-02",
            'line 2: version: version is text: write it in quotes, e.g. version: "2026-12-02"',
        ),
        ("directory: 1", "directory: 2", "line 1: directory: Input should be 1"),
        ("    active: false\n", "    active: 'no'\n", "line 22: people.3.active: Input should be a valid boolean"),
        (
            "  - id: omar\n    name: Omar Haddad",
            "  - id: omar\n    name: Omar Haddad\n    manager: omar",
            "managers form a cycle: omar -> omar",
        ),
        ("  - id: finance_directors", "  - id: ana", "line 28: groups.1.id: 'ana' is both a person and a group"),
    ],
    ids=[
        "unknown-key",
        "unknown-manager",
        "duplicate-person",
        "duplicate-email",
        "bad-email",
        "duplicate-group",
        "unknown-member",
        "member-twice",
        "unknown-operator",
        "unknown-operator-gate",
        "unknown-gate",
        "level-below-1",
        "self-delegation",
        "inactive-delegate",
        "unknown-delegate",
        "end-before-start",
        "bidi-in-reason",
        "newline-in-name",
        "empty-description",
        "unquoted-version",
        "format-version",
        "boolean-as-text",
        "self-manager",
        "person-and-group-id",
    ],
)
def test_each_problem_is_one_line_naming_the_file_and_the_line(old, new, expected):
    assert old in BASE
    found = problems(BASE.replace(old, new, 1))
    assert len(found) == 1, found
    assert found[0].startswith(f"{PATH}: ") and expected in found[0], found[0]
    assert "\n" not in found[0]


def test_every_problem_is_reported_not_only_the_first():
    text = BASE.replace("manager: omar", "manager: nobody", 1).replace("members: [omar]", "members: [olga]")
    assert problems(text) == [
        f"{PATH}: line 8: people.0.manager: no person 'nobody' in the file",
        f"{PATH}: line 30: groups.1.members.0: no person 'olga' in the file",
    ]


def test_a_cycle_of_managers_is_named_once_from_its_first_person():
    text = BASE.replace("    title: Director\n", "    title: Director\n    manager: ben\n")
    assert problems(text) == [f"{PATH}: line 13: people.1.manager: managers form a cycle: ben -> omar -> ben"]


def test_a_long_cycle_is_found_however_the_people_are_ordered():
    people = "".join(
        f"  - {{id: p{i}, name: P {i}, email: p{i}@example.com, title: T, manager: p{(i + 1) % 50}}}\n" for i in range(50)
    )
    text = f'directory: 1\nversion: "1"\npeople:\n{people}'
    (problem,) = problems(text)
    assert problem.startswith(f"{PATH}: line 4: people.0.manager: managers form a cycle: p0 -> p1 -> p2 -> ")
    assert problem.endswith("p48 -> p49 -> p0")


def test_overlapping_delegations_from_one_person_are_refused_and_back_to_back_ones_are_not():
    second = "  - {from: ana, to: omar, start: 2026-12-08, end: 2026-12-10, reason: conference}\n"
    (problem,) = problems(BASE + second)
    assert problem == (
        f"{PATH}: line 37: delegations.1: overlaps delegations.0 (ana to ben, 2026-12-01 00:00Z until 2026-12-09 00:00Z); "
        "a person delegates to one person at a time"
    )
    after = second.replace("start: 2026-12-08", "start: 2026-12-09")
    assert len(parse(BASE + after).delegations) == 2
    other_person = second.replace("from: ana, to: omar", "from: ben, to: omar")
    assert len(parse(BASE + other_person).delegations) == 2


def test_times_with_an_offset_are_taken_in_utc():
    text = BASE.replace("start: 2026-12-01, end: 2026-12-08", "start: 2026-12-01T09:00:00+02:00, end: 2026-12-01T17:00:00")
    (delegation,) = parse(text).delegations
    assert delegation.start == datetime(2026, 12, 1, 7, tzinfo=UTC)
    assert delegation.end == datetime(2026, 12, 1, 17, tzinfo=UTC), "a time without an offset is UTC"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"people: &p [1]\nmore: *p\n", "line 2: YAML aliases (*p) are not allowed in directory files; write the value out"),
        (b"directory: 1\ndirectory: 1\n", "line 2: duplicate key 'directory' (first at line 1)"),
        (b"directory: 1\nversion: \xe7\n", "line 2: not UTF-8 text (byte 0xe7 at offset 22)"),
        (b"people: [unclosed\n", "line 2 column 1: while parsing a flow sequence"),
        (b"# nothing yet\n", "the file is empty; a directory file has the keys directory, version, people"),
        (b"- a\n- b\n", "line 1: directory: expected a mapping"),
        (b"#" * (MAX_DIRECTORY_FILE_BYTES + 1), "cannot read directory: larger than 4096 KiB; a directory file is at most 4 MiB"),
    ],
    ids=["alias", "duplicate-key", "not-utf8", "unclosed", "empty", "not-a-mapping", "too-large"],
)
def test_files_that_are_not_acceptable_yaml_are_refused_in_one_line(data, expected):
    with pytest.raises(DirectoryError) as caught:
        parse_directory_file(data, PATH)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{PATH}: ") and expected in problem, problem


def test_a_roster_lists_active_members_inactive_ones_apart_delegations_operators_and_serving_groups():
    directory = parse(BASE)
    roster = directory.roster(
        ["finance_reviewers", "finance_directors", "no_such_group"], ["ae_sam"], "finance", now=datetime(2026, 12, 2, tzinfo=UTC)
    )
    assert roster.members == {"finance_reviewers": ["ana", "ben"], "finance_directors": ["omar"], "no_such_group": []}
    assert roster.inactive == {"finance_reviewers": ["greta"]}
    assert roster.directory_version == "2026-12-02.1"
    assert [(d.delegator, d.delegate, d.ends_at) for d in roster.delegations] == [
        ("ana", "ben", datetime(2026, 12, 9, tzinfo=UTC))
    ]
    assert roster.operators == ["omar", "ben"]
    assert roster.serving == {"finance_reviewers": [0], "finance_directors": [1, 2]}
    assert roster.people == {"ana": "Ana Costa", "ben": "Ben Okafor", "omar": "Omar Haddad"}, "known people the roster names"


def test_a_roster_leaves_out_ended_delegations_and_those_of_people_not_involved():
    directory = parse(BASE)
    after = directory.roster(["finance_reviewers"], now=datetime(2026, 12, 9, tzinfo=UTC))
    assert after.delegations == []
    unrelated = directory.roster(["finance_directors"], now=datetime(2026, 12, 2, tzinfo=UTC))
    assert unrelated.delegations == []
    as_requester = directory.roster(["finance_directors"], ["ana"], now=datetime(2026, 12, 2, tzinfo=UTC))
    assert [d.delegate for d in as_requester.delegations] == ["ben"]


@pytest.mark.parametrize(
    ("groups", "people"),
    [
        (["finance_directors"], []),  # the delegation's people are in no asked group: left out
        (["finance_directors"], ["ana"]),  # ... unless one of them is the requester
        (["finance_reviewers"], ["ae_sam"]),
        (["finance_directors", "finance_reviewers", "no_such_group"], []),
        ([], ["omar"]),
    ],
)
def test_a_roster_narrowed_to_some_groups_is_what_the_directory_answers_for_them(groups, people):
    """A case reads the roster of every group its policy may ask for before it knows which its gate needs."""
    directory = parse(BASE)
    now = datetime(2026, 12, 2, tzinfo=UTC)
    every_group = directory.roster(["finance_reviewers", "finance_directors", "no_such_group"], people, "finance", now=now)
    assert narrowed_roster(every_group, groups, people) == directory.roster(groups, people, "finance", now=now)


def test_a_roster_from_the_world_tables_narrowed_names_only_the_members_left():
    """Without a directory file (no version), a roster names its active members only, in the order read."""
    world = Roster(
        members={"finance_reviewers": ["ben", "ana"], "finance_directors": ["omar"]},
        people={"ben": "Ben Okafor", "ana": "Ana Costa", "omar": "Omar Haddad"},
        inactive={"finance_reviewers": ["greta"]},
    )
    narrowed = narrowed_roster(world, ["finance_reviewers"], ["omar"])
    assert narrowed.members == {"finance_reviewers": ["ben", "ana"]}
    assert list(narrowed.people) == ["ben", "ana"]
    assert narrowed.inactive == {"finance_reviewers": ["greta"]}


def test_operators_without_a_gate_are_only_those_of_all_gates_and_inactive_people_are_none():
    text = BASE.replace("{person: omar, gates: [finance]}", "{person: greta, gates: all}")
    directory = parse(text)
    assert directory.operators_for(None) == ["ben"]
    assert directory.operators_for("ops") == ["ben"]
    assert directory.serving(None) == {}


def test_a_delegation_is_in_force_from_its_start_until_its_end_excluded():
    delegation = Delegation(
        delegator="ana",
        delegate="ben",
        starts_at=datetime(2026, 12, 1, tzinfo=UTC),
        ends_at=datetime(2026, 12, 9, tzinfo=UTC),
        reason="out of office",
    )
    assert delegations_in_force([delegation], datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == []
    assert delegations_in_force([delegation], datetime(2026, 12, 1, tzinfo=UTC)) == [delegation]
    assert delegations_in_force([delegation], datetime(2026, 12, 8, 23, 59, tzinfo=UTC)) == [delegation]
    assert delegations_in_force([delegation], datetime(2026, 12, 9, tzinfo=UTC)) == []
