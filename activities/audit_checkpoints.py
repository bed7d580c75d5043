"""Signed checkpoints of the audit log's head, written to a folder outside the database on a schedule.

The `AuditCheckpoint` workflow (workflows/audit_checkpoint.py) runs this once per tick of the
Temporal schedule `hitl audit schedule` creates, so every checkpoint is a run the Temporal UI lists
(Schedules), with its result, and a log that no longer holds fails that run, visibly, instead of
being signed. The file is named by the head's global_seq, so a retry or a tick with nothing new
writes the same file again, not a second one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.audit_keys import AuditKeyError, dev_checkpoint_key, load_checkpoint_key
from activities.store.audit import verify_log
from gates.audit import key_id, sign_checkpoint
from gates.messages import CheckpointReceipt, CheckpointRequest

CHECKPOINT_DIR = Path("audit") / "checkpoints"  # under the state directory, unless configured


class CheckpointSettings(Protocol):
    """The part of `workers.config.Settings` this module reads."""

    state_dir: Path
    audit_key_file: Path | None
    audit_checkpoint_dir: Path | None


def checkpoint_dir(settings: CheckpointSettings) -> Path:
    return settings.audit_checkpoint_dir or settings.state_dir / CHECKPOINT_DIR


class AuditCheckpointActivities:
    def __init__(self, pool: asyncpg.Pool, settings: CheckpointSettings):
        self._pool, self._settings = pool, settings

    @activity.defn(name="sign_audit_checkpoint")
    async def sign_audit_checkpoint(self, request: CheckpointRequest) -> CheckpointReceipt:
        """Verify the whole log, then sign its head into `<dir>/checkpoint-<global_seq>.json`."""
        settings = self._settings
        try:
            configured = settings.audit_key_file
            key = load_checkpoint_key(configured) if configured else dev_checkpoint_key(settings.state_dir)
        except AuditKeyError as err:  # a missing or broken key is not fixed by retrying
            raise ApplicationError(str(err), type="AuditKeyError", non_retryable=True) from None
        async with self._pool.acquire() as conn:
            report = await verify_log(conn)
        if not report.ok:
            raise ApplicationError(
                f"not signed: the audit log does not hold: {report.problems[0]}", type="AuditLogBroken", non_retryable=True
            )
        if report.head is None:
            return CheckpointReceipt(signed=False)
        signed = sign_checkpoint(key, report.head, datetime.now(UTC))
        folder = checkpoint_dir(settings)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"checkpoint-{signed.global_seq:012d}.json"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(signed.to_json_bytes())
        os.replace(temporary, path)
        return CheckpointReceipt(
            signed=True,
            global_seq=signed.global_seq,
            row_hash=signed.row_hash,
            key_id=key_id(key.public_key()),
            path=str(path),
            rows_checked=report.rows_checked,
        )
