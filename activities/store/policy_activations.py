"""Every query on `policy_activations` (migration 0007): which policy version is in force per kind.

The newest row of a kind is its active version. Rows are never changed (the table refuses UPDATE and
DELETE); activating is inserting. Each kind's activations are serialised by an advisory lock, so two
concurrent first resolutions (the bootstrap) or two approvals of one change write one row.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, TypeAlias

import asyncpg
from pydantic import Field, TypeAdapter, ValidationError

from gates.cases import MAX_TEXT_CHARS, CaseKind, PersonId
from gates.policy import Policy, PolicyError, parse_policy_text
from gates.policy_activation import PolicyActivation, policy_digest
from gates.text import person_text_problem

# A connection or a pool: a pool lends one connection per call.
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"

# The first key of the two-key advisory lock a kind's activation holds ("HITL" + "P"olicy); the second is the kind.
_KIND_LOCK_SPACE = 0x48_49_54_50

_COLUMNS = "kind, policy_ref, version, digest, policy_text, activated_at, approved_by, reason, change_id, trace_id"
_APPROVERS = TypeAdapter(Annotated[list[PersonId], Field(max_length=100)])
# A change ID is a workflow ID, a trace ID a row or OpenTelemetry ID: short, one line.
_ID = TypeAdapter(Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")])


def _activation(row: asyncpg.Record) -> PolicyActivation:
    return PolicyActivation(**{**dict(row), "approved_by": list(row["approved_by"])})


@contextlib.asynccontextmanager
async def _transaction(conn: Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as lent, lent.transaction():
            yield lent
    else:
        async with conn.transaction():
            yield conn


async def lock_kind(conn: asyncpg.Connection, kind: CaseKind) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _KIND_LOCK_SPACE, kind.value)


async def active_policy(conn: Connection, kind: CaseKind) -> PolicyActivation | None:
    """The version of `kind`'s policy in force (its newest activation), or None before the first."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM policy_activations WHERE kind = $1 ORDER BY id DESC LIMIT 1", kind.value
    )
    return None if row is None else _activation(row)


async def activation_history(conn: Connection, kind: CaseKind) -> list[PolicyActivation]:
    """Every activation of `kind`'s policy, newest first (the first is the one in force)."""
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM policy_activations WHERE kind = $1 ORDER BY id DESC", kind.value)
    return [_activation(row) for row in rows]


def _checked(policy_text: str, approved_by: list[str], reason: str, change_id: str | None, trace_id: str | None) -> Policy:
    """The parsed policy, or PolicyError naming what is wrong with the activation's inputs."""
    if not isinstance(policy_text, str):
        raise PolicyError("activation: policy_text must be the policy file's text")
    policy = parse_policy_text(policy_text.encode(), "policy to activate")
    try:
        _APPROVERS.validate_python(approved_by)
    except ValidationError as err:
        raise PolicyError(f"activation of {policy.ref}: approved_by must be person IDs: {err.errors()[0]['msg']}") from err
    problem = person_text_problem(reason) if isinstance(reason, str) else "is not text"
    if problem or not reason.strip() or len(reason) > MAX_TEXT_CHARS:
        raise PolicyError(
            f"activation of {policy.ref}: the reason {problem or f'must be 1 to {MAX_TEXT_CHARS} characters'}"
        )
    for name, value in (("change_id", change_id), ("trace_id", trace_id)):
        if value is not None:
            try:
                _ID.validate_python(value)
            except ValidationError as err:
                raise PolicyError(f"activation of {policy.ref}: {name} {err.errors()[0]['msg']}") from err
    return policy


async def activate(
    conn: Connection,
    *,
    policy_text: str,
    approved_by: list[str],
    reason: str,
    change_id: str | None,
    trace_id: str | None,
) -> PolicyActivation:
    """Put `policy_text` in force for its kind from now on; the new activation.

    The text is validated as a policy file is (PolicyError when invalid, a customer_commitment rule at
    `auto` included). Idempotent on `change_id`: a second call with the same change ID returns the
    first row and activates nothing. The same version may be activated again with other content
    (a deployment's copy with other gate delays, say): the digest tells the texts apart."""
    policy = _checked(policy_text, approved_by, reason, change_id, trace_id)
    try:
        return await _insert(conn, policy, policy_text, approved_by, reason, change_id, trace_id)
    except asyncpg.UniqueViolationError:  # the same change ID, activated meanwhile for another kind's lock
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM policy_activations WHERE change_id = $1", change_id)
        if row is None:
            raise
        return _activation(row)


async def _insert(
    conn: Connection,
    policy: Policy,
    policy_text: str,
    approved_by: list[str],
    reason: str,
    change_id: str | None,
    trace_id: str | None,
) -> PolicyActivation:
    digest = policy_digest(policy_text)
    async with _transaction(conn) as tx:
        await lock_kind(tx, policy.kind)
        if change_id is not None:
            row = await tx.fetchrow(f"SELECT {_COLUMNS} FROM policy_activations WHERE change_id = $1", change_id)
            if row is not None:
                return _activation(row)
        row = await tx.fetchrow(
            f"""INSERT INTO policy_activations
                    (kind, policy_ref, version, digest, policy_text, approved_by, reason, change_id, trace_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                RETURNING {_COLUMNS}""",
            policy.kind.value,
            policy.ref,
            policy.version,
            digest,
            policy_text,
            list(approved_by),
            reason,
            change_id,
            trace_id,
        )
        return _activation(row)


async def activate_if_none(conn: Connection, *, policy_text: str, reason: str) -> PolicyActivation:
    """The bootstrap: activate `policy_text` (approved by nobody) unless its kind has an active version
    already; the active version either way. Concurrent calls write one row (the kind's lock)."""
    policy = _checked(policy_text, [], reason, None, None)
    async with _transaction(conn) as tx:
        await lock_kind(tx, policy.kind)
        current = await active_policy(tx, policy.kind)
        if current is not None:
            return current
        row = await tx.fetchrow(
            f"""INSERT INTO policy_activations (kind, policy_ref, version, digest, policy_text, approved_by, reason)
                VALUES ($1, $2, $3, $4, $5, '{{}}', $6)
                RETURNING {_COLUMNS}""",
            policy.kind.value,
            policy.ref,
            policy.version,
            policy_digest(policy_text),
            policy_text,
            reason,
        )
        return _activation(row)
