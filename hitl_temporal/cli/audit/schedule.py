"""`hitl audit schedule --every DURATION | --now | --off`: sign checkpoints on a Temporal schedule.

The schedule (`hitl-audit-checkpoint`, in the Temporal UI under Schedules) starts the
`AuditCheckpoint` workflow on the case task queue; a worker verifies the whole log and writes the
signed head to HITL_AUDIT_CHECKPOINT_DIR (default `<state dir>/audit/checkpoints/`), a folder to keep
outside the database's reach. A log that does not hold fails that run instead of being signed.
"""

from __future__ import annotations

from datetime import timedelta

import click
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from gates.durations import exact_duration, parse_duration
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from workflows.audit_checkpoint import AUDIT_CHECKPOINT, SCHEDULE_ID

SHORTEST = timedelta(minutes=1)


def _every(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        every = parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    if every < SHORTEST:
        raise click.BadParameter(f"{value!r} is shorter than {exact_duration(SHORTEST)}: every run verifies the whole log")
    return every


@click.command()
@state_dir_option
@click.option("--every", "every_text", default=None, metavar="DURATION", help="Sign a checkpoint this often (e.g. 1h, 1d).")
@click.option("--now", "now", is_flag=True, help="Also run one now (the schedule must exist).")
@click.option("--off", "off", is_flag=True, help="Delete the schedule.")
@pass_app
def schedule(app: Application, every_text: str | None, now: bool, off: bool) -> None:
    """Create, change, trigger or delete the schedule that signs audit checkpoints."""
    if off and (every_text or now):
        app.fail("--off deletes the schedule: give it alone")
    if not (off or every_text or now):
        app.fail("give --every DURATION (create or change), --now (run one now) or --off (delete)")
    every = _every(every_text)
    settings = app.settings

    async def body() -> int:
        client = await app.temporal()
        handle = client.get_schedule_handle(SCHEDULE_ID)
        if off:
            try:
                await handle.delete()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                click.echo(f"hitl: no schedule {SCHEDULE_ID} to delete", err=True)
                return 1
            click.echo(f"deleted schedule {SCHEDULE_ID}")
            return 0
        if every is not None:
            wanted = Schedule(
                action=ScheduleActionStartWorkflow(AUDIT_CHECKPOINT, id=f"{SCHEDULE_ID}-run", task_queue=settings.task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            )
            try:
                await client.create_schedule(SCHEDULE_ID, wanted)
                verb = "created"
            except ScheduleAlreadyRunningError:

                def replaced(_: ScheduleUpdateInput) -> ScheduleUpdate:
                    return ScheduleUpdate(schedule=wanted)

                await handle.update(replaced)
                verb = "changed"
            queue = settings.task_queue
            click.echo(f"{verb} schedule {SCHEDULE_ID}: a checkpoint every {exact_duration(every)} on task queue {queue}")
        if now:
            try:
                await handle.trigger()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                click.echo(f"hitl: no schedule {SCHEDULE_ID}: create it with --every DURATION", err=True)
                return 1
            click.echo(f"triggered schedule {SCHEDULE_ID}: a worker signs the head now")
        return 0

    app.run(body)
