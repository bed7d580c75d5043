"""Activities of the PolicyChange workflow: prepare the change's brief, and record its decision.

`prepare_policy_change` reads the version in force (the activation record; before any, it records
the bootstrap a case's first start would, from the newest file other than the proposed one) and the
past traces of the kind, for the what-if report and the agreement figures. `record_policy_change` writes once per run, in one
transaction: the record (`policy_changes`, migration 0008), the activation when approved (idempotent
on the change ID), and the change's gate events in the audit log. An approval that cannot be put in
force (the version in force is no longer the one the owners compared it with, or the store refuses
the text) is recorded as approved, not activated, with why: never retried, never stuck.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.policy_files import bundled_policy_dir, load_policy_file
from activities.store import audit as audit_log
from activities.store.policy_activations import activate, activate_if_none, activation_history, active_policy, lock_kind
from activities.store.trace_reads import cited_precedents, decided_traces
from gates.agreement import measure_agreement
from gates.cases import CaseKind
from gates.policy import Policy, PolicyError
from gates.policy_activation import PolicyActivation, policy_digest
from gates.policy_change import (
    ChangeBrief,
    ChangeReceipt,
    ChangeRecord,
    PrepareChangeInput,
    PreparedChange,
    RecordChangeInput,
    WhatIfSummary,
    approval_plan,
    change_digest,
    diff_policies,
    touched_agreement,
)
from gates.text import storable
from gates.whatif import what_if

log = logging.getLogger("hitl.activities")


class PolicyChangeSettings(Protocol):
    """The part of `workers.config.Settings` these activities read."""

    policy_dir: Path | None


class PolicyChangeActivities:
    def __init__(self, pool: asyncpg.Pool, settings: PolicyChangeSettings):
        self._pool = pool
        self._settings = settings

    def activities(self) -> list:
        return [self.prepare_policy_change, self.record_policy_change]

    async def _active(self, conn: asyncpg.Connection, proposed: Policy) -> tuple[Policy | None, str | None, str]:
        """The version the change is compared with, its text and where it came from."""
        activation = await active_policy(conn, proposed.kind)
        if activation is not None:
            return activation.policy(), activation.policy_text, "activation"
        # none activated yet: the newest file of the kind other than the proposed one, as a case's first start would take it
        directory = Path(self._settings.policy_dir) if self._settings.policy_dir else bundled_policy_dir()
        newest: tuple[tuple[int, int], Policy, str] | None = None
        for path in sorted(directory.glob("*.yaml")):
            try:
                policy = load_policy_file(path)
            except PolicyError:
                continue
            if policy.kind != proposed.kind or policy.ref == proposed.ref:
                continue
            major, minor = policy.version.split(".")
            key = (int(major), int(minor))
            if newest is None or key > newest[0]:
                newest = (key, policy, path.read_text(encoding="utf-8"))
        if newest is None:
            return None, None, "none"
        # what a case's first start would activate (activities/case_activities.py), recorded now, so the
        # version the brief compares with is the one in force, and the proposed file, if it sits in the
        # folder as the newest, is never put in force by a bootstrap
        bootstrap = await activate_if_none(
            conn, policy_text=newest[2], reason=f"initial activation: newest file in {directory} other than a proposed version"
        )
        return bootstrap.policy(), bootstrap.policy_text, "initial activation"

    @activity.defn(name="prepare_policy_change")
    async def prepare_policy_change(self, prepare: PrepareChangeInput) -> PreparedChange:
        """The brief: diff against the active version, what-if over past traces, agreement of the touched rules."""
        request = prepare.request
        try:
            proposed = request.policy()
        except PolicyError as err:  # the workflow parsed it already: only a changed loader gets here
            raise ApplicationError(str(err), type="PolicyError", non_retryable=True) from err
        async with self._pool.acquire() as conn:
            active, active_text, source = await self._active(conn, proposed)
            history = await activation_history(conn, proposed.kind)
        proposed_digest = policy_digest(request.policy_text)
        if any(a.policy_ref == proposed.ref and a.digest != proposed_digest for a in history):
            problem = f"{proposed.ref} was activated before with other content: a changed policy needs a new version number"
            raise ApplicationError(problem, type="PolicyError", non_retryable=True)
        if history and history[0].policy_ref == proposed.ref:
            raise ApplicationError(f"{proposed.ref} is the version in force already", type="PolicyError", non_retryable=True)
        async with self._pool.acquire() as conn:
            recorded = await decided_traces(conn, since=None, kind=proposed.kind)
            cited = await cited_precedents(conn, [c for t in recorded.traces for c in t.precedents_cited])
        diff = diff_policies(active, proposed)
        agreement = measure_agreement(recorded.traces)
        brief = ChangeBrief(
            change_id=prepare.change_id,
            kind=proposed.kind.value,
            proposed=proposed.ref,
            proposed_digest=proposed_digest,
            active=active.ref if active is not None else None,
            active_source=source,
            proposer=request.proposer,
            reason=request.reason,
            diff=diff,
            plan=approval_plan(active, proposed),
            whatif=WhatIfSummary.of(what_if(proposed, recorded.traces, cited)),
            agreement=touched_agreement(agreement.rules, proposed.kind.value, diff.touched_rules),
            digest=change_digest(
                proposed_digest, active.ref if active else None, policy_digest(active_text) if active_text else None
            ),
        )
        return PreparedChange(active_text=active_text, brief=brief)

    @activity.defn(name="record_policy_change")
    async def record_policy_change(self, recording: RecordChangeInput) -> ChangeReceipt:
        """The record, the activation (approved changes only) and the audit events, in one transaction; a retry finds the row."""
        record = recording.record
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, record FROM policy_changes WHERE change_id = $1 AND run_id = $2", record.change_id, record.run_id
            )
            if row is not None:  # a retry after the commit: the receipt as first written
                return await _receipt_of(conn, row["id"], json.loads(row["record"]), record.change_id)
            record_id = await conn.fetchval("SELECT nextval('policy_changes_id_seq')")  # the activation cites it
            activated, not_activated = None, None
            if record.outcome == "approve":
                activated, not_activated = await self._activate(conn, record, recording.policy_text, record_id)
            document = storable(record.model_dump(mode="json"))
            if not_activated is not None:
                document["not_activated"] = storable(not_activated)
            await conn.execute(
                """INSERT INTO policy_changes (id, change_id, run_id, kind, policy, outcome, decided_by, decided_via, reason,
                       proposer, decided_at, record)
                   VALUES ($12,$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11::jsonb)""",
                record.change_id,
                record.run_id,
                record.kind,
                record.policy,
                record.outcome,
                record.decided_by,
                record.decided_via,
                document["reason"],
                record.proposer,
                record.decided_at,
                json.dumps(document),
                record_id,
            )
            await audit_log.append_events(conn, recording.audit)
        log.info(
            "recorded policy change %s: %s by %s%s",
            record.change_id,
            record.outcome,
            record.decided_by,
            f" (not activated: {not_activated})" if not_activated else "",
        )
        return ChangeReceipt(
            record_id=record_id,
            activated=activated.policy_ref if activated is not None else None,
            activated_at=activated.activated_at if activated is not None else None,
            not_activated=not_activated,
        )

    async def _activate(
        self, conn: asyncpg.Connection, record: ChangeRecord, policy_text: str, record_id: int
    ) -> tuple[PolicyActivation | None, str | None]:
        """Put the approved version in force, under the kind's lock, only over the version its owners compared
        it with; otherwise (or when the store refuses the text) why not, in one line, and nothing activated."""
        kind = CaseKind(record.kind)
        async with conn.transaction():  # a savepoint: a refused activation leaves the record to write
            await lock_kind(conn, kind)
            current = await active_policy(conn, kind)
            if current is not None and current.change_id == record.change_id:
                return current, None  # activated by this change already
            in_force = current.policy_ref if current is not None else None
            if record.active is not None and in_force != record.active:
                return None, (
                    f"{in_force} was put in force after this change's brief compared {record.policy} with {record.active}: "
                    f"propose {record.policy} again (or a new version) against {in_force}"
                )
        approvers = list(dict.fromkeys(a.decided_by for a in record.approvals)) or [record.decided_by]
        try:
            async with conn.transaction():
                activation = await activate(
                    conn,
                    policy_text=policy_text,
                    approved_by=approvers,
                    reason=record.reason,
                    change_id=record.change_id,
                    trace_id=f"policy_changes/{record_id}",
                )
        except PolicyError as err:
            return None, f"the store refused to activate {record.policy}: {str(err).splitlines()[0]}"
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as err:
            return None, f"the store refused to activate {record.policy}: {type(err).__name__}: {str(err).splitlines()[0]}"
        return activation, None


async def _receipt_of(conn: asyncpg.Connection, record_id: int, document: dict, change_id: str) -> ChangeReceipt:
    activated = await conn.fetchrow("SELECT policy_ref, activated_at FROM policy_activations WHERE change_id = $1", change_id)
    return ChangeReceipt(
        record_id=record_id,
        activated=activated["policy_ref"] if activated is not None and document.get("outcome") == "approve" else None,
        activated_at=activated["activated_at"] if activated is not None and document.get("outcome") == "approve" else None,
        not_activated=document.get("not_activated"),
    )
