"""Bench-only variants of the case workflows, to measure proposed changes without touching product code.

`install({task_queue: variant})` runs in a bench worker process (`bench.worker_proc`) and wraps three
functions of `temporalio.workflow` and the `load_policies` that `resolve_policy` calls; the wrappers
look at the running workflow's (or activity's) task queue and change nothing on a `product` queue:

- `local_acts`: the read-only or pure steps (`resolve_policy`, `gather_*`, `find_precedents`,
  `summarize_case`, `load_reviewer_roster`) run as local activities, with the same timeouts, retry
  policies and summaries; `record_decision` and `notify_reviewers` stay regular activities.
- `local_reads`: the same without the connectors: `gather_*` (external systems that may be slow or
  failing, which operators should see as pending activities) stay regular activities.
- `merged_upserts`: search-attribute upserts are collected and sent as one upsert just before the
  workflow schedules its next regular activity or waits, i.e. one upsert per workflow task instead
  of one per `_publish` call (the last value of each attribute wins, so what visibility shows at the
  end of each workflow task is the same).
- `policy_cache`: `resolve_policy` parses the policy YAML only when a file in the directory changed
  (keyed by name, size and mtime), instead of parsing and validating every file for every case;
  it still resolves the newest version at the case's start.
- `lean`: all three.

workflows/case.py and activities/ are not changed; histories of these variants are not replay-compatible with the
product's and exist only on the bench's own task queues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio import activity, workflow

from activities import case_activities

LOCAL_ACTIVITIES = frozenset(
    {
        "resolve_policy",
        "find_precedents",
        "summarize_case",
        "load_reviewer_roster",
        "gather_crm",
        "gather_chat",
        "gather_vendor_master",
        "gather_finance",
        "gather_procurement",
        "gather_iam",
    }
)
LOCAL_READS = frozenset({"resolve_policy", "find_precedents", "summarize_case", "load_reviewer_roster"})
FEATURES: dict[str, frozenset[str]] = {
    "product": frozenset(),
    "local_acts": frozenset({"local"}),
    "local_reads": frozenset({"local_reads"}),
    "merged_upserts": frozenset({"merged"}),
    "policy_cache": frozenset({"policy_cache"}),
    "lean": frozenset({"local", "merged", "policy_cache"}),
}
VARIANTS = tuple(FEATURES)
_REGULAR_ONLY = ("task_queue", "heartbeat_timeout", "versioning_intent", "priority")

_orig_execute_activity = workflow.execute_activity
_orig_upsert = workflow.upsert_search_attributes
_orig_wait_condition = workflow.wait_condition
_orig_load_policies = case_activities.load_policies
_policy_cache: dict[tuple, Any] = {}
_variant_of_queue: dict[str, str] = {}
# Pending upserts per run id (host-side state shared by all sandboxes of this process).
_pending: dict[str, dict[str, Any]] = {}


def _has(feature: str) -> bool:
    return feature in FEATURES[_variant_of_queue.get(workflow.info().task_queue, "product")]


def _local() -> bool:
    return _has("local")


def _merged() -> bool:
    return _has("merged")


def policy_cache_key(directory: Path) -> tuple:
    """What decides whether the parsed policies are still current: every file's name, size and mtime."""
    return (str(directory),) + tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.glob("*.yaml")))


def _load_policies(directory: Path):
    queue = activity.info().task_queue if activity.in_activity() else None
    if "policy_cache" not in FEATURES[_variant_of_queue.get(queue or "", "product")]:
        return _orig_load_policies(directory)
    key = policy_cache_key(directory)
    if key not in _policy_cache:
        _policy_cache[key] = _orig_load_policies(directory)
    return _policy_cache[key]


def _flush() -> None:
    updates = _pending.pop(workflow.info().run_id, None)
    if updates:
        _orig_upsert(list(updates.values()))


def _execute_activity(act: Any, *args: Any, **kwargs: Any):
    local = LOCAL_ACTIVITIES if _local() else LOCAL_READS if _has("local_reads") else frozenset()
    if isinstance(act, str) and act in local:
        for key in _REGULAR_ONLY:
            kwargs.pop(key, None)
        return workflow.execute_local_activity(act, *args, **kwargs)
    if _merged():
        _flush()
    return _orig_execute_activity(act, *args, **kwargs)


def _upsert_search_attributes(updates: Any) -> None:
    if not _merged():
        return _orig_upsert(updates)
    pending = _pending.setdefault(workflow.info().run_id, {})
    for update in updates:
        pending[update.key.name] = update


async def _wait_condition(fn: Any, **kwargs: Any) -> None:
    if _merged():
        _flush()
    return await _orig_wait_condition(fn, **kwargs)


def install(queues: dict[str, str]) -> None:
    """Apply `variant` to the workflows of each task queue; a no-op when every queue is `product`."""
    for queue, variant in queues.items():
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        _variant_of_queue[queue] = variant
    if all(v == "product" for v in _variant_of_queue.values()):
        return
    case_activities.load_policies = _load_policies  # type: ignore[assignment]
    workflow.execute_activity = _execute_activity  # type: ignore[assignment]
    workflow.upsert_search_attributes = _upsert_search_attributes  # type: ignore[assignment]
    workflow.wait_condition = _wait_condition  # type: ignore[assignment]
