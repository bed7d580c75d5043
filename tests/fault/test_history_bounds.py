"""What bounds a case's history: every ordinary path stays far below Temporal's limits without
continuing as new, a request_info round costs a few events, and the server limits we set keep even a
flood of signals far below them (continue-as-new itself: tests/integration/test_continue_as_new.py).

Temporal terminates a workflow whose history passes 51,200 events or 50 MB, with nothing recorded.
A case is one bounded loop: gather, evaluate, summarize, wait at one gate for at most `len(levels)`
reminder/escalation pairs and a timeout, record, end; the stored history of every path of every
kind (tests/histories/) stays under EVENT_BOUND events. What can add events beyond one path is a
request_info round (bounded by MAX_REQUEST_INFO_ROUNDS), a signal (anyone can send one: bounded per
run by the server, and the case continues as new), and an accepted update (rejected ones write
nothing; operator actions are bounded by MAX_OPERATOR_ACTIONS, and a decision closes the gate).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates import bounds
from gates.cases import CaseKind

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "tests" / "histories"
EVENT_BOUND = 200
HISTORY_BYTES_BOUND = 256 * 1024
TEMPORAL_WARNS_AT_EVENTS = 10_240
TEMPORAL_HISTORY_BYTES_LIMIT = 50 * 1024 * 1024


def _events(path: Path) -> list[dict]:
    return json.loads(path.read_text())["events"]


def test_no_ordinary_path_needs_to_continue_as_new():
    for path in sorted(HISTORIES.glob("*.json")):
        types = {event["eventType"] for event in _events(path)}
        assert "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW" not in types, path.name


def test_the_server_limits_keep_a_signal_flood_far_below_the_history_limit():
    """One run takes at most SERVER_MAX_SIGNALS_PER_RUN signals of at most SERVER_BLOB_LIMIT_BYTES;
    while signals keep arriving a run cannot continue as new, so this is the most a flood adds."""
    flood = bounds.SERVER_MAX_SIGNALS_PER_RUN * bounds.SERVER_BLOB_LIMIT_BYTES
    assert flood + 2 * bounds.MAX_CASE_PAYLOAD_BYTES * 10 < TEMPORAL_HISTORY_BYTES_LIMIT * 0.75
    assert bounds.CONTINUE_AS_NEW_AFTER_SIGNALS < bounds.SERVER_MAX_SIGNALS_PER_RUN
    assert bounds.CONTINUE_AS_NEW_AFTER_HISTORY_BYTES < TEMPORAL_HISTORY_BYTES_LIMIT / 10
    assert bounds.CONTINUE_AS_NEW_AFTER_EVENTS < TEMPORAL_WARNS_AT_EVENTS
    assert bounds.MAX_CASE_PAYLOAD_BYTES <= bounds.SERVER_BLOB_LIMIT_BYTES // 2


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
