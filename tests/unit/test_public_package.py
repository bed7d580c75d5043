"""What `hitl_temporal` offers a service: the curated names, and a documented client."""

from __future__ import annotations

import inspect

import hitl_temporal
from hitl_temporal import CaseClient


def test_every_exported_name_exists_and_the_service_facing_ones_are_exported():
    assert [name for name in hitl_temporal.__all__ if not hasattr(hitl_temporal, name)] == []
    wanted = {"CaseClient", "Decision", "RenewalDiscountRequest", "CaseError", "ActionRefused", "InboxPage", "CaseView"}
    assert wanted <= set(hitl_temporal.__all__)


def test_every_public_client_method_is_documented_and_takes_its_options_by_keyword():
    methods = {name: fn for name, fn in inspect.getmembers(CaseClient, inspect.isfunction) if not name.startswith("_")}
    wanted = {"start_case", "get_case", "decide", "wait_for_decision", "inbox", "escalate", "reassign", "cancel", "note", "retry"}
    assert wanted <= set(methods)
    for name, fn in methods.items():
        assert fn.__doc__ and fn.__doc__.strip(), f"CaseClient.{name} has no docstring"
        options = [p for p in inspect.signature(fn).parameters.values() if p.default is not inspect.Parameter.empty]
        assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in options), f"CaseClient.{name}: options must be keyword-only"
