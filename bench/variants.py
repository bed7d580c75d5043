"""Bench-only variants of the case workflows, to measure design choices without touching product code.

`install({task_queue: variant})` runs in a bench worker process (`bench.worker_proc`) and wraps a few
functions of `temporalio.workflow` and `PolicyCache.load`; the wrappers look at the running
workflow's (or activity's) task queue and change nothing on a `product` queue:

- `before_lean`: the product as it was before `LEAN_PATCH` (the baseline of the last benchmark):
  `workflow.patched(LEAN_PATCH)` answers False, so every read is a regular activity and every
  upsert carries every attribute, and `resolve_policy` parses the policy files for every case.
- `before_hardened`: the product as it was before `HARDENED_PATCH` (the baseline of this change):
  `workflow.patched(HARDENED_PATCH)` answers False, so no start metadata is read, no attribute is
  unset at the first task, no heartbeat is set and the case never continues as new.
- `before_local_gathers`: the product as it was before `LOCAL_GATHERS_PATCH`: the connectors
  (`gather_*`) as regular activities only, and the brief written by the `summarize_case` local activity.
- `merged_upserts`: search-attribute upserts are collected and sent as one upsert just before the
  workflow schedules its next regular activity or waits, i.e. one upsert per workflow task (the last
  value of each attribute wins). Bench-only: a handler that changes attributes while the main loop
  keeps waiting would publish nothing until the loop's next step.
- `asserted`: the product with identity off (`HITL_IDENTITY=asserted` for that queue's worker, set by
  `bench.worker_proc`): no proof is verified, but the directory is still read again per decision and the
  evidence digest is still composed (both are TRUST_PATCH's, in either mode).
- `before_trust`: the product as it was before `TRUST_PATCH`: `workflow.patched(TRUST_PATCH)` answers
  False, so no issuer keys are resolved, no directory re-read per decision, no digest.
- `before_combined`: the product as it was before `COMBINED_PATCH`: three patch markers, the start's
  metadata and the policy read apart, the gate's roster and the issuers' keys read apart.
- `no_audit_writes`: the product with its activities writing no audit rows (the database side of the
  audit log: the advisory lock, the head reads, the inserts, the trace digest); the workflow still
  computes the events and sends them, so that part of the cost is not in the difference.
Every `before_*` variant also answers False for `LOCAL_GATHERS_PATCH` and `COMBINED_PATCH`, which imply the others.

Histories of these variants exist only on the bench's own task queues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio import activity, workflow

from activities.policy_files import PolicyCache, load_policies
from activities.store import audit as store_audit
from workflows.case import COMBINED_PATCH, HARDENED_PATCH, LEAN_PATCH, LOCAL_GATHERS_PATCH
from workflows.trust import TRUST_PATCH

FEATURES: dict[str, frozenset[str]] = {
    "product": frozenset(),
    "before_lean": frozenset({"before_lean"}),
    "before_hardened": frozenset({"before_hardened"}),
    "before_local_gathers": frozenset({"before_local_gathers"}),
    "merged_upserts": frozenset({"merged"}),
    "asserted": frozenset({"asserted"}),
    "before_trust": frozenset({"before_trust"}),
    "before_combined": frozenset({"before_combined"}),
    "no_audit_writes": frozenset({"no_audit_writes"}),
}
# Variants that are a worker setting, not a change to the workflow code (bench.worker_proc applies them).
SETTINGS_OF_VARIANT: dict[str, dict[str, Any]] = {"asserted": {"identity": "asserted"}}
VARIANTS = tuple(FEATURES)

_orig_execute_activity_method = workflow.execute_activity_method
_orig_upsert = workflow.upsert_search_attributes
_orig_wait_condition = workflow.wait_condition
_orig_patched = workflow.patched
_orig_policy_load = PolicyCache.load
_orig_append_events = store_audit.append_events
_orig_append_with_trace_event = store_audit.append_with_trace_event
_variant_of_queue: dict[str, str] = {}
# Pending upserts per run id (host-side state shared by all sandboxes of this process).
_pending: dict[str, dict[str, Any]] = {}


def _has(feature: str) -> bool:
    return feature in FEATURES[_variant_of_queue.get(workflow.info().task_queue, "product")]


_BEFORE = ("before_local_gathers", "before_combined", "before_trust", "before_hardened", "before_lean")


def _patched(patch_id: str) -> bool:
    if patch_id == LOCAL_GATHERS_PATCH and any(_has(f) for f in _BEFORE):
        return False
    if patch_id == COMBINED_PATCH and any(_has(f) for f in _BEFORE[1:]):
        return False
    if patch_id == LEAN_PATCH and _has("before_lean"):
        return False
    if patch_id == HARDENED_PATCH and _has("before_hardened"):
        return False
    if patch_id == TRUST_PATCH and _has("before_trust"):
        return False
    return _orig_patched(patch_id)


def _activity_has(feature: str) -> bool:
    queue = activity.info().task_queue if activity.in_activity() else ""
    return feature in FEATURES[_variant_of_queue.get(queue, "product")]


async def _append_events(conn: Any, events: Any) -> list:
    if _activity_has("no_audit_writes"):
        return []
    return await _orig_append_events(conn, events)


async def _append_with_trace_event(conn: Any, events: Any, **kwargs: Any) -> list:
    if _activity_has("no_audit_writes"):
        return []
    return await _orig_append_with_trace_event(conn, events, **kwargs)


def _policy_load(self: PolicyCache, directory: Path):
    queue = activity.info().task_queue if activity.in_activity() else ""
    if "before_lean" in FEATURES[_variant_of_queue.get(queue, "product")]:
        return load_policies(directory)
    return _orig_policy_load(self, directory)


def _flush() -> None:
    updates = _pending.pop(workflow.info().run_id, None)
    if updates:
        _orig_upsert(list(updates.values()))


def _execute_activity_method(act: Any, *args: Any, **kwargs: Any):
    """Every regular activity the product schedules goes through here: it calls them by method
    (workflows/activity_calls.py), never by name with `workflow.execute_activity`."""
    if _has("merged"):
        _flush()
    return _orig_execute_activity_method(act, *args, **kwargs)


def _upsert_search_attributes(updates: Any) -> None:
    if not _has("merged"):
        return _orig_upsert(updates)
    pending = _pending.setdefault(workflow.info().run_id, {})
    for update in updates:
        pending[update.key.name] = update


async def _wait_condition(fn: Any, **kwargs: Any) -> None:
    if _has("merged"):
        _flush()
    return await _orig_wait_condition(fn, **kwargs)


def install(queues: dict[str, str]) -> None:
    """Apply `variant` to the workflows of each task queue; a no-op when every queue is `product`."""
    for queue, variant in queues.items():
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        _variant_of_queue[queue] = variant
    if all(v in ("product", *SETTINGS_OF_VARIANT) for v in _variant_of_queue.values()):
        return
    PolicyCache.load = _policy_load  # type: ignore[method-assign]
    store_audit.append_events = _append_events  # type: ignore[assignment]
    store_audit.append_with_trace_event = _append_with_trace_event  # type: ignore[assignment]
    workflow.patched = _patched  # type: ignore[assignment]
    workflow.execute_activity_method = _execute_activity_method  # type: ignore[assignment]
    workflow.upsert_search_attributes = _upsert_search_attributes  # type: ignore[assignment]
    workflow.wait_condition = _wait_condition  # type: ignore[assignment]
