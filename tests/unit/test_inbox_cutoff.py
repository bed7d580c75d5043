"""The inbox's oldest page: the cutoff search on HitlGateOpenedAt, against simulated visibility stores,
and inbox rows read from raw listing entries."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from temporalio.api.common.v1 import SearchAttributes, WorkflowType
from temporalio.api.common.v1 import WorkflowExecution as RawExecution
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.client import WorkflowExecution
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.converter import DataConverter, encode_search_attributes

from gates import search_attributes as sa
from hitl_temporal.inbox import (
    EPOCH,
    MAX_REFINE_ROUNDS,
    PROBE_AGES,
    CutoffSearch,
    Window,
    cutoff_literal,
    inbox_item,
    with_cutoff,
)

NOW = datetime(2026, 11, 26, 16, 0, 0, 123456, tzinfo=UTC)
Store = Callable[[list[datetime | None], Window], list[int]]


def exact_store(opened: list[datetime | None], window: Window) -> list[int]:
    """Indexes of the rows a window takes in a store with real timestamps (PostgreSQL)."""
    return [i for i, at in enumerate(opened) if at is not None and window.after < at <= window.upto]


def _stored_text(at: datetime) -> str:
    rounded = at + timedelta(microseconds=500)  # STRFTIME('%f') rounds to the millisecond
    return f"{rounded:%Y-%m-%d %H:%M:%S}.{rounded.microsecond // 1000:03d}+00:00"


def _literal_text(at: datetime) -> str:
    fraction = f".{at.microsecond:06d}".rstrip("0") if at.microsecond else ""
    return f"{at:%Y-%m-%d %H:%M:%S}{fraction}+00:00"


def sqlite_store(opened: list[datetime | None], window: Window) -> list[int]:
    """The dev server's SQLite visibility, as measured: the column holds the time rounded to the
    millisecond as text, compared as text with the literal (whose trailing zeros are dropped, so
    `<= '...:43Z'` leaves out a case opened at :43.000)."""
    after, upto = _literal_text(window.after), _literal_text(window.upto)
    return [i for i, at in enumerate(opened) if at is not None and after < _stored_text(at) <= upto]


def up_to(cutoff: datetime) -> Window:
    return Window(EPOCH, cutoff)


def run_search(opened: list[datetime | None], limit: int, store: Store) -> tuple[CutoffSearch, list[int], int]:
    """(the search, the rows listed at its cutoff (everything without one), how many counts it asked for)."""
    search = CutoffSearch(limit, NOW)
    counts = 0
    while windows := search.probes():
        for window in windows:
            search.record(window, len(store(opened, window)))
            counts += 1
    window = search.listing()
    listed = list(range(len(opened))) if window is None else store(opened, window)
    assert window is None or store(opened, up_to(window.upto)) == listed  # nothing left out before the window
    return search, listed, counts


def oldest(opened: list[datetime | None], rows: list[int], limit: int) -> list[int]:
    """The page the client keeps: `rows` oldest first (ties by index, standing in for start time and case ID)."""
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(rows, key=lambda i: (opened[i] or far, i))[:limit]


def uniform(n: int, span: timedelta, seed: int = 1) -> list[datetime | None]:
    rnd = random.Random(seed)
    return [NOW - span * rnd.random() for _ in range(n)]


STORES = pytest.mark.parametrize("store", [exact_store, sqlite_store], ids=["exact", "sqlite"])


@STORES
@pytest.mark.parametrize(
    "opened",
    [
        uniform(1667, timedelta(days=7)),
        uniform(1667, timedelta(minutes=4)),  # all opened in a burst, as in the benchmark
        uniform(300, timedelta(days=400)),  # some older than the oldest probe
        uniform(200, timedelta(hours=6)) + uniform(1000, timedelta(minutes=10), seed=2),  # old tail, recent burst
    ],
    ids=["week", "burst", "year_plus", "tail_and_burst"],
)
def test_the_page_is_exactly_the_oldest_cases_and_lists_few_more(opened, store):
    limit = 50
    search, listed, counts = run_search(opened, limit, store)
    assert oldest(opened, listed, limit) == oldest(opened, list(range(len(opened))), limit)
    assert limit <= len(listed) <= limit + search.slack
    assert counts <= len(PROBE_AGES) + 2 * MAX_REFINE_ROUNDS


@STORES
def test_cases_opened_at_one_instant_are_never_split_or_doubled(store):
    # 30 opened before, 40 at the very same whole second (the 50th case is one of them), 30 after
    tie = NOW.replace(microsecond=0) - timedelta(hours=5)
    opened = (
        [tie - timedelta(minutes=30 - i) for i in range(30)] + [tie] * 40 + [tie + timedelta(minutes=1 + i) for i in range(30)]
    )
    _, listed, _ = run_search(opened, 50, store)
    assert set(range(70)) <= set(listed)  # every tied case, whatever the store does at the boundary
    assert len(set(listed)) == len(listed)
    assert oldest(opened, listed, 50) == list(range(50))


@STORES
def test_ties_within_a_millisecond_fall_on_the_same_side(store):
    base = NOW - timedelta(days=1)
    opened = [base + timedelta(microseconds=i) for i in range(100)]  # one millisecond holds them all
    _, listed, _ = run_search(opened, 50, store)
    assert oldest(opened, listed, 50) == list(range(50))


def test_ages_in_the_future_and_cases_without_an_opening_time():
    # a client clock an hour behind the server: every case opened "in the future"
    ahead = [NOW + timedelta(minutes=30) + timedelta(seconds=i) for i in range(80)]
    search, listed, _ = run_search(ahead, 50, exact_store)
    assert search.cutoff is not None and oldest(ahead, listed, 50) == list(range(50))
    # too few cases with an opening time to fill the page: no cutoff, everything is listed
    unopened = uniform(30, timedelta(days=1)) + [None] * 40
    search, listed, _ = run_search(unopened, 50, exact_store)
    assert search.cutoff is None and listed == list(range(70))


def test_a_case_decided_between_counts_only_shortens_the_page():
    opened = uniform(500, timedelta(days=3))
    live = list(opened)
    search = CutoffSearch(50, NOW)
    first = True
    while windows := search.probes():
        for window in windows:
            search.record(window, len(exact_store(live, window)))
        if first:  # the oldest case is decided after the first count
            live[min(range(len(live)), key=lambda i: live[i])] = None
            first = False
    listed = exact_store(live, search.listing())
    assert oldest(live, listed, 50) == oldest(live, list(range(len(live))), 50)


def test_larger_pages_and_the_slack():
    opened = uniform(1667, timedelta(days=7))
    search, listed, _ = run_search(opened, 500, sqlite_store)
    assert search.slack == 125 and 500 <= len(listed) <= 625
    assert oldest(opened, listed, 500) == oldest(opened, list(range(1667)), 500)
    with pytest.raises(ValueError):
        CutoffSearch(0, NOW)


def test_counts_are_of_windows_after_the_latest_cutoff_below_the_limit():
    search = CutoffSearch(50, NOW)
    first, second = NOW - PROBE_AGES[0], NOW - PROBE_AGES[1]
    assert search.probes() == [Window(EPOCH, first)] and search.cutoff is None
    search.record(Window(EPOCH, first), 20)
    assert search.probes() == [Window(first, second)]  # only what opened since: the index walks that alone
    search.record(Window(first, second), 100)
    assert search.cutoff == second  # 20 + 100 at or before it: narrowed next, from the same start
    (window,) = search.probes()
    assert window.after == first and first < window.upto < second


def test_cutoff_literal_is_rfc3339_utc():
    at = datetime(2026, 11, 26, 17, 0, 0, 123000, tzinfo=timezone(timedelta(hours=1)))
    assert cutoff_literal(at) == "'2026-11-26T16:00:00.123000Z'"
    assert with_cutoff("HitlCaseState = 'waiting'", at) == (
        "HitlCaseState = 'waiting' AND HitlGateOpenedAt <= '2026-11-26T16:00:00.123000Z'"
    )
    assert Window(EPOCH, at).query("q") == with_cutoff("q", at)
    assert Window(at - timedelta(days=1), at).query("q") == (
        "q AND HitlGateOpenedAt <= '2026-11-26T16:00:00.123000Z' AND HitlGateOpenedAt > '2026-11-25T16:00:00.123000Z'"
    )


def test_inbox_item_reads_the_raw_listing_as_the_sdk_would():
    opened = datetime(2026, 11, 25, 9, 30, 0, 250000, tzinfo=UTC)
    attributes = TypedSearchAttributes([
        SearchAttributePair(sa.CASE_KIND, "renewal_discount_exception"),
        SearchAttributePair(sa.BUSINESS_KEY, "acme_enterprise/fy26"),
        SearchAttributePair(sa.CASE_STATE, "waiting"),
        SearchAttributePair(sa.GATE, "finance"),
        SearchAttributePair(sa.REQUESTER, "ae_sam"),
        SearchAttributePair(sa.REVIEWER_GROUP, "finance_directors"),
        SearchAttributePair(sa.ESCALATION_LEVEL, 1),
        SearchAttributePair(sa.AMOUNT_MINOR, 12_000_00),
        SearchAttributePair(sa.ASK, "28% renewal discount for acme_enterprise (fy26)"),
        SearchAttributePair(sa.ELIGIBLE_GROUPS, ["finance_directors", "cfo_office"]),
        SearchAttributePair(sa.REASON_CODES, ["threshold_breach"]),
        SearchAttributePair(sa.GATE_OPENED_AT, opened),
        SearchAttributePair(sa.NEXT_DEADLINE, opened + timedelta(hours=24)),
    ])
    info = WorkflowExecutionInfo(
        execution=RawExecution(workflow_id="renewal_discount_exception:acme_enterprise/fy26", run_id="run-1"),
        type=WorkflowType(name="RenewalDiscountException"),
        search_attributes=SearchAttributes(),
    )
    info.start_time.FromDatetime(opened - timedelta(minutes=3))
    encode_search_attributes(attributes, info.search_attributes)
    now = opened + timedelta(hours=2)

    item = inbox_item(info, now)
    sdk = WorkflowExecution._from_raw_info(info, "default", DataConverter.default).typed_search_attributes
    assert item.gate_opened_at == sdk.get(sa.GATE_OPENED_AT) == opened
    assert item.next_deadline == sdk.get(sa.NEXT_DEADLINE)
    assert (item.kind, item.gate, item.escalation_level, item.reviewer_group, item.requester, item.business_key) == (
        "renewal_discount_exception", "finance", 1, "finance_directors", "ae_sam", "acme_enterprise/fy26"
    )
    assert item.eligible_groups == sdk.get(sa.ELIGIBLE_GROUPS) == ["finance_directors", "cfo_office"]
    assert item.reason_codes == ["threshold_breach"] and item.ask == sdk.get(sa.ASK)
    assert (item.age_seconds, item.time_left_seconds, item.deadline_action) == (7200, 22 * 3600, "escalates")
    assert item.started_at == opened - timedelta(minutes=3)
    assert (item.case_id, item.run_id, item.workflow_type) == (
        "renewal_discount_exception:acme_enterprise/fy26", "run-1", "RenewalDiscountException"
    )

    # a case not at a gate yet: no attributes beyond its kind, ages from its start
    bare = WorkflowExecutionInfo(execution=RawExecution(workflow_id="x", run_id="r"), type=WorkflowType(name="T"))
    bare.start_time.FromDatetime(now - timedelta(seconds=40))
    item = inbox_item(bare, now)
    assert (item.gate_opened_at, item.next_deadline, item.age_seconds, item.time_left_seconds) == (None, None, 40, None)
    assert (item.eligible_groups, item.deadline_action) == ([], "times out")
