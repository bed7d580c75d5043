"""`hitl ops replay`: replay histories against the current workflow code."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import click
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError

from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.errors import CaseError
from hitl_temporal.ops import fetch_case_history


@click.command()
@state_dir_option
@click.argument("case_id", required=False)
@click.option("--query", default=None, help="Replay every workflow this visibility query lists.")
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A history JSON file (repeatable).",
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def replay(app: Application, case_id: str | None, query: str | None, files: tuple[Path, ...], as_json: bool) -> None:
    """Replay histories against the current workflow code: exit 0 when all replay clean, 1 on any divergence.

    Give a CASE_ID, a visibility --query, or history --file(s) (from `hitl ops export` or
    `temporal workflow show -o json`)."""
    if sum(bool(x) for x in (case_id, query, files)) != 1:
        app.fail("give exactly one of CASE_ID, --query or --file")
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

        from workers.client import payload_codec
        from workers.replay import HistoryFileError, load_history_file, replay_histories  # the workflow code: only here

        codec = payload_codec(app.settings)  # encrypted histories: HITL_CODEC_KEYS

        # A divergence is the answer here, not an incident: keep the SDK's own failure logs quiet.
        logging.getLogger("temporalio").setLevel(logging.CRITICAL)
        quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))
        histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory]
        if files:
            try:
                histories = [load_history_file(p, codec) for p in files]
            except HistoryFileError as err:
                app.fail(str(err))
        elif case_id:
            cases = await app.cases()
            histories = [await fetch_case_history(cases.client, await cases.resolve_case_id(case_id))]
        else:
            histories = (await app.temporal()).list_workflows(query).map_histories()
        try:
            outcomes = await replay_histories(histories, runtime=runtime, codec=codec)
        except RPCError as err:
            raise CaseError(f"cannot list or fetch histories: {err.message}") from err
        if as_json:
            click.echo(json.dumps([o.model_dump() for o in outcomes], indent=2))
        else:
            for outcome in outcomes:
                click.echo(outcome.line())
            if not outcomes:
                click.echo("no histories to replay")
        return 0 if all(o.clean for o in outcomes) else 1

    app.run(body)
