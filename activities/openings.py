"""The reads a case makes at once, as one local activity each (since COMBINED_PATCH, workflows/case.py).

A local activity's cost is mostly its round in the workflow (a marker event, its payloads through
the sandbox), not the read (BENCHMARKS.md): a case reads its start's UI text and its policy as it
starts, and the gate's roster and the issuers' keys as its gate first opens, so each pair is one
activity whose halves run concurrently. The halves are the activities they were (and still are, for
older histories and for the later reads that need only one of them).
"""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio import activity

from activities.case_activities import CaseActivities
from activities.directory import DirectoryActivities
from activities.identity import IdentityActivities
from activities.start_metadata import StartMetadataActivities
from activities.store import audit as audit_log
from gates.audit import AuditEvent
from gates.messages import CaseOpening, GateReadRequest, GateReads, OpenCaseRequest


class OpeningActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        start_metadata: StartMetadataActivities,
        cases: CaseActivities,
        directory: DirectoryActivities,
        identity: IdentityActivities,
    ):
        self._pool = pool
        self._start_metadata, self._cases, self._directory, self._identity = start_metadata, cases, directory, identity

    def activities(self) -> list:
        return [self.open_case, self.read_gate]

    @activity.defn(name="open_case")
    async def open_case(self, request: OpenCaseRequest) -> CaseOpening:
        """The start's UI text and the kind's active policy version (`resolve_policy`: the activation
        table, bootstrapped from the newest file once per kind); a broken file at that bootstrap fails
        it for good (PolicyError), as it fails `resolve_policy`."""
        metadata, policy = await asyncio.gather(
            self._start_metadata.read_start_metadata(request.start), self._cases.resolve_policy(request.policy)
        )
        return CaseOpening(metadata=metadata, policy=policy)

    @activity.defn(name="read_gate")
    async def read_gate(self, request: GateReadRequest) -> GateReads:
        """Also writes the case's gate events the audit log does not hold yet (its opening): each once."""
        roster, trust, _ = await asyncio.gather(
            self._directory.load_reviewer_roster(request.roster),
            self._identity.resolve_trust(request.trust),
            self._append(request.audit),
        )
        return GateReads(roster=roster, trust=trust)

    async def _append(self, events: list[AuditEvent]) -> None:
        if events:
            async with self._pool.acquire() as conn:
                await audit_log.append_events(conn, events)
