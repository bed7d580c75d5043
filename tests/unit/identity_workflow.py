"""A workflow that verifies proofs, for the sandbox test in test_identity.py (in its own module: the
sandbox re-imports a workflow's module, so it must do nothing at import time)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gates.identity import ProofRefused, TrustSnapshot, verify_proof


class ProofCheck(BaseModel):
    token: str
    trust: TrustSnapshot
    person: str
    wait: timedelta


class ProofCheckResult(BaseModel):
    before_waiting: str
    after_waiting: str


def _judge(check: ProofCheck) -> str:
    try:
        return "verified " + verify_proof(check.token, check.trust, person=check.person, now=workflow.now()).person
    except ProofRefused as refused:
        return f"refused: {refused}"


@workflow.defn(name="ProofCheck", sandboxed=True)
class ProofCheckWorkflow:
    """Verifies the proof at the workflow's time, waits, and verifies it again."""

    @workflow.run
    async def run(self, check: ProofCheck) -> ProofCheckResult:
        before = _judge(check)
        await workflow.sleep(check.wait)
        return ProofCheckResult(before_waiting=before, after_waiting=_judge(check))
