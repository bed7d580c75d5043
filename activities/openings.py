"""The reads a case makes at once, as one local activity each (since COMBINED_PATCH, workflows/case.py).

A local activity's cost is mostly its round in the workflow (a marker event, its payloads through
the sandbox), not the read (BENCHMARKS.md): a case reads its start's UI text and its policy as it
starts, and the gate's roster and the issuers' keys as its gate first opens, so each pair is one
activity whose halves run concurrently. The halves are the activities they were (and still are, for
older histories and for the later reads that need only one of them). Since LOCAL_GATHERS_PATCH a
case also asks the sources of its first round with its opening read, and reads that round's
precedents with its gate's roster and keys.
"""

from __future__ import annotations

import asyncio

import asyncpg
from temporalio import activity

from activities.case_activities import CaseActivities
from activities.directory import DirectoryActivities
from activities.gather import GatherActivities
from activities.identity import IdentityActivities
from activities.start_metadata import StartMetadataActivities
from activities.store import audit as audit_log
from gates.audit import AuditEvent
from gates.messages import (
    CaseOpening,
    GateReadRequest,
    GateReads,
    OpenAndGatherRequest,
    OpenCaseRequest,
    OpenedAndGathered,
    PrecedentsAndGate,
    PrecedentsAndGateRequest,
)

# How long a case's opening read waits for each source before the case asks it as an activity.
FIRST_ATTEMPT_SECONDS = 2.0


class OpeningActivities:
    def __init__(
        self,
        pool: asyncpg.Pool,
        start_metadata: StartMetadataActivities,
        cases: CaseActivities,
        directory: DirectoryActivities,
        identity: IdentityActivities,
        gather: GatherActivities,
    ):
        self._pool = pool
        self._start_metadata, self._cases, self._directory, self._identity = start_metadata, cases, directory, identity
        self._gather = gather

    def activities(self) -> list:
        return [self.open_case, self.read_gate, self.open_case_and_gather, self.read_precedents_and_gate]

    @activity.defn(name="open_case")
    async def open_case(self, request: OpenCaseRequest) -> CaseOpening:
        """The start's UI text, the kind's active policy version (`resolve_policy`: the activation
        table, bootstrapped from the newest file once per kind) and whether an agent advises on
        briefs (since LOCAL_GATHERS_PATCH the workflow writes the brief itself). A broken file at
        that bootstrap fails it for good (PolicyError), as it fails `resolve_policy`."""
        metadata, policy = await asyncio.gather(
            self._start_metadata.read_start_metadata(request.start), self._cases.resolve_policy(request.policy)
        )
        return CaseOpening(metadata=metadata, policy=policy, agent_configured=self._cases.agent_configured())

    @activity.defn(name="open_case_and_gather")
    async def open_case_and_gather(self, request: OpenAndGatherRequest) -> OpenedAndGathered:
        """`open_case` and one quick attempt at each source of the first round, at once. A source that
        does not answer within FIRST_ATTEMPT_SECONDS, or fails, is reported, never raised: the case asks
        it again as its `gather_<source>` activity, so a slow or failing source shows in `hitl ops stuck`."""
        opening, gathered = await asyncio.gather(
            self.open_case(request.opening),
            asyncio.gather(*(self._gather.attempt(source, within=FIRST_ATTEMPT_SECONDS) for source in request.sources)),
        )
        return OpenedAndGathered(opening=opening, gathered=list(gathered))

    @activity.defn(name="read_gate")
    async def read_gate(self, request: GateReadRequest) -> GateReads:
        """Also writes the case's gate events the audit log does not hold yet (its opening): each once."""
        roster, trust, _ = await asyncio.gather(
            self._directory.load_reviewer_roster(request.roster),
            self._identity.resolve_trust(request.trust),
            self._append(request.audit),
        )
        return GateReads(roster=roster, trust=trust)

    @activity.defn(name="read_precedents_and_gate")
    async def read_precedents_and_gate(self, request: PrecedentsAndGateRequest) -> PrecedentsAndGate:
        """`find_precedents` and `read_gate` at once: a case's first round reads them together (its
        audit events written once, as by `read_gate`). The gate's half is read for a gate that may not
        open (a case its policy decides), so when it fails it is reported as None, not raised: the case
        does not wait on a directory, an issuer or an audit write it may not need, and a gate that
        opens reads them again then (`read_gate`)."""
        precedents, gate = await asyncio.gather(
            self._cases.find_precedents(request.precedents), self._gate_reads_or_none(request.gate)
        )
        return PrecedentsAndGate(precedents=precedents, gate=gate)

    async def _gate_reads_or_none(self, request: GateReadRequest) -> GateReads | None:
        try:
            return await self.read_gate(request)
        except Exception as err:  # left for the gate's own read as it opens (cancellation still propagates)
            activity.logger.warning("the gate's reads failed, left for when the gate opens: %s", err)
            return None

    async def _append(self, events: list[AuditEvent]) -> None:
        if events:
            async with self._pool.acquire() as conn:
                await audit_log.append_events(conn, events)
