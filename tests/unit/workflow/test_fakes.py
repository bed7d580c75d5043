"""The fakes stand in for the real activities only while they answer under the same names and with
the same input and result types; this says which one drifted when an activity is added or changed."""

from __future__ import annotations

from temporalio import activity

from tests.unit.workflow.fakes import FakeWorld
from workers.config import Settings
from workers.worker import activities_for

# The worker's health probe (`hitl check`'s own workflow) and the scheduled audit checkpoint: never called by a case.
NOT_CALLED_BY_CASES = {"record_stack_check", "sign_audit_checkpoint", "prepare_policy_change", "record_policy_change"}


def _signatures(functions: list) -> dict[str, tuple[list[type] | None, type | None]]:
    """Activity name -> (input types, result type), as the worker registers them. The SDK has no
    public reader of an `@activity.defn`, so this uses the one its worker uses."""
    definitions = [activity._Definition.must_from_callable(fn) for fn in functions]
    return {d.name or "": (d.arg_types, d.ret_type) for d in definitions}


def test_every_activity_a_case_calls_on_the_real_worker_has_a_fake_of_the_same_name_and_types():
    # Built only to read their definitions: no pool, no client, nothing connects.
    real = _signatures(activities_for(None, Settings(_env_file=None, database_url=None), None))
    for name in NOT_CALLED_BY_CASES:
        real.pop(name)
    assert _signatures(FakeWorld().activities()) == real
