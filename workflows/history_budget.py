"""Keeping a case's history small: upserts that send only what changed, and the moment a waiting
case continues as new before its history grows past Temporal's limits (gates/bounds.py).

Workflow code: both read the run's own `workflow.info()`.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from gates import bounds


def upsert(updates: list[SearchAttributeUpdate[Any]], *, lean: bool) -> None:
    """Upsert search attributes; lean runs (LEAN_PATCH) send only the values that changed (against
    the workflow's own view of its attributes, which each upsert updates), and nothing when none did."""
    if lean:
        current = workflow.info().typed_search_attributes
        updates = [u for u in updates if current.get(u.key) != u.value]
        if not updates:
            return
    workflow.upsert_search_attributes(updates)


def continue_as_new_due(*, signals_this_run: int) -> bool:
    """Temporal suggests it, this run took many signals (the server refuses more than
    SERVER_MAX_SIGNALS_PER_RUN per run), or the history passed our own bounds."""
    info = workflow.info()
    return (
        info.is_continue_as_new_suggested()
        or signals_this_run >= bounds.CONTINUE_AS_NEW_AFTER_SIGNALS
        or info.get_current_history_size() >= bounds.CONTINUE_AS_NEW_AFTER_HISTORY_BYTES
        or info.get_current_history_length() >= bounds.CONTINUE_AS_NEW_AFTER_EVENTS
    )
