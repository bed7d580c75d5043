"""`hitl precedent retract TRACE --reason R --as OPERATOR`: no new case cites that precedent any more,
and the trace's case chain records who retracted it and why."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import click

from activities.store.audit import append_events
from activities.store.precedents import precedent_of_trace, retract_precedent
from gates.audit import AuditEvent, AuditKind
from gates.text import one_visible_line_problem, terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.precedent.show import SCHEMA_BEHIND, not_precedent, trace_argument, unknown_trace

# A retraction's reason is read beside the precedent, not a document.
MAX_REASON_CHARS = 500


@click.command()
@state_dir_option
@trace_argument
@click.option("--reason", required=True, help="Why no new case should cite it (one line, recorded in the chain).")
@click.option(
    "--as",
    "operator",
    required=True,
    help="Who retracts it. Recorded as asserted: outside a workflow nothing proves it yet.",
)
@pass_app
def retract(app: Application, trace_id: int, reason: str, operator: str) -> None:
    """Retract the precedent decision trace TRACE became: new cases no longer cite it, and a
    precedent_retracted event (trace, reason, operator) joins the trace's case chain. The operator
    is recorded with "identity asserted": the CLI proves who acts only through a workflow, and here
    there is none. A precedent is retracted once: again is refused, naming the first retraction (exit 1)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    if problem := one_visible_line_problem(reason):
        app.fail(f"--reason {problem}")
    if len(reason) > MAX_REASON_CHARS:
        app.fail(f"--reason has {len(reason)} characters; at most {MAX_REASON_CHARS}")
    if problem := one_visible_line_problem(operator):
        app.fail(f"--as {problem}")

    async def body() -> int:
        conn = await app.database()
        try:
            async with conn.transaction():
                found = await precedent_of_trace(conn, trace_id, for_update=True)
                if found is None:
                    click.echo(f"hitl: {unknown_trace(trace_id)}", err=True)
                    return 1
                if found.precedent is None:
                    click.echo(f"hitl: {not_precedent(found)}", err=True)
                    return 1
                if (first := found.precedent)["retracted_at"] is not None:
                    identity = f" (identity {first['retracted_identity']})" if first["retracted_identity"] else ""
                    click.echo(
                        f"hitl: refused: the precedent of trace {trace_id} was retracted already, at "
                        f"{first['retracted_at'].astimezone(UTC).isoformat()} by "
                        f"{terminal_text(first['retracted_by'], one_line=True)}{identity}: "
                        f"{terminal_text(first['retracted_reason'], one_line=True)}",
                        err=True,
                    )
                    return 1
                now = datetime.now(UTC)
                await retract_precedent(conn, trace_id, reason=reason, retracted_by=operator, identity="asserted", at=now)
                event = AuditEvent(
                    event_key=f"precedent/{trace_id}/{AuditKind.PRECEDENT_RETRACTED.value}",
                    case_id=found.case_id,
                    kind=AuditKind.PRECEDENT_RETRACTED,
                    at=now,
                    body={"trace_id": trace_id, "reason": reason, "operator": operator, "operator_identity": "asserted"},
                )
                [row] = await append_events(conn, [event])
        except asyncpg.UndefinedColumnError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        click.echo(
            f"retracted the precedent of trace {trace_id} (case {terminal_text(found.case_id, one_line=True)}): "
            f"no new case cites it; recorded in its chain at global_seq {row.global_seq} "
            f"as {terminal_text(operator, one_line=True)} (identity asserted)"
        )
        return 0

    app.run(body)
