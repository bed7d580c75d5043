"""Continue-as-new: the case workflows do not use it, and do not need it.

A case is one bounded loop: gather, evaluate, summarize, wait at one gate for at most
`len(levels)` reminder/escalation pairs and a timeout, record, end. The stored history of every
path of every kind (tests/histories/, replayed in tests/test_replay.py) stays under EVENT_BOUND
events, some 50 times below the 10,240 events at which Temporal starts warning (the hard limit is
51,200 events or 50 MB). What can add events beyond one path is human-paced: another
`request_info` round (measured below), a signal, an accepted update (rejected updates write
nothing; Temporal also caps updates at 2,000 per execution). Continue-as-new would add a second
run per case, split the decision key (`<case>#<first run>`) and the history an auditor reads,
for no gain at these sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.cases import CaseKind

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "tests" / "histories"
EVENT_BOUND = 200
HISTORY_BYTES_BOUND = 256 * 1024
TEMPORAL_WARNS_AT_EVENTS = 10_240


def _events(path: Path) -> list[dict]:
    return json.loads(path.read_text())["events"]


def test_no_case_workflow_continues_as_new():
    for source in sorted((ROOT / "workflows").glob("*.py")):
        assert "continue_as_new" not in source.read_text(), f"{source.name} continues as new; revisit this module"
    for path in sorted(HISTORIES.glob("*.json")):
        types = {event["eventType"] for event in _events(path)}
        assert "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW" not in types, path.name


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_every_stored_path_stays_under_the_event_bound(path: Path):
    events = _events(path)
    assert events[-1]["eventType"] in {
        "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED",
        "EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED",
    }, "a stored path ends with the case closed"
    assert len(events) < EVENT_BOUND, f"{path.stem}: {len(events)} events"
    assert path.stat().st_size < HISTORY_BYTES_BOUND, f"{path.stem}: {path.stat().st_size} bytes of history JSON"


@pytest.mark.parametrize("kind", list(CaseKind), ids=lambda k: k.value)
def test_a_request_info_round_adds_few_events(kind: CaseKind):
    """The one loop in a case: each round costs what `request_info` adds over a plain approval."""
    approve = len(_events(HISTORIES / f"{kind.value}--approve.json"))
    with_round = len(_events(HISTORIES / f"{kind.value}--request_info.json"))
    per_round = with_round - approve
    assert 0 < per_round < 60, per_round
    longest = max(len(_events(p)) for p in HISTORIES.glob(f"{kind.value}--*.json"))
    assert (TEMPORAL_WARNS_AT_EVENTS - longest) // per_round > 100, "a hundred rounds still fit under Temporal's warning"
