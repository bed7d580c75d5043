"""`hitl start | approve | reject | request-info | show | trace | seed`: the decision loop from a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from activities.db import connect
from gates.cases import KIND_ALIASES, REQUEST_MODELS
from gates.gate import Decision, DecisionOutcome, format_validation_error
from gates.trace import CaseView, DecisionTrace
from workers.cases import CaseClient, CaseError
from workers.client import connect_client
from workers.config import resolve_database_url


def register(cli: click.Group, *, load_settings, run_command, state_dir_option, fail) -> None:
    """Add the case commands to the `hitl` group (kept apart from process commands for readability)."""

    @cli.command()
    @state_dir_option
    @click.argument("kind", type=click.Choice(sorted(KIND_ALIASES), case_sensitive=False), metavar="KIND")
    @click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
    @click.option("--json", "as_json", is_flag=True, help='Print {"case_id": ...}.')
    def start(state_dir: Path | None, kind: str, file_: Path, as_json: bool) -> None:
        """Start a case of KIND (renewal, procurement, access) from a JSON file, or find the running one."""
        settings = load_settings(state_dir)
        model = REQUEST_MODELS[KIND_ALIASES[kind.lower()]]
        try:
            request = model.model_validate_json(file_.read_text())
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in err.errors())
            fail(f"{file_}: invalid {model.kind.value} case: {problems}")

        async def body() -> int:
            cases = CaseClient(await connect_client(settings), settings.task_queue)
            started = await cases.start_case(request)
            if as_json:
                click.echo(json.dumps({"case_id": started.case_id, "created": started.created}))
            else:
                click.echo(started.case_id if started.created else f"{started.case_id} (already exists)")
            return 0

        run_command(body)

    def decision_command(name: str, outcome: DecisionOutcome, help_text: str) -> None:
        @cli.command(name=name, help=help_text)
        @state_dir_option
        @click.argument("case_id")
        @click.option("--as", "reviewer", required=True, help="Your reviewer id.")
        @click.option("--reason", required=True, help="Why (required).")
        def command(state_dir: Path | None, case_id: str, reviewer: str, reason: str) -> None:
            settings = load_settings(state_dir)
            try:
                decision = Decision(outcome=outcome, reviewer=reviewer, reason=reason)
            except ValidationError as err:
                fail(format_validation_error(err))

            async def body() -> int:
                cases = CaseClient(await connect_client(settings), settings.task_queue)
                try:
                    receipt = await cases.decide(case_id, decision)
                except CaseError as err:
                    click.echo(f"hitl: rejected: {err}", err=True)
                    return 1
                click.echo(f"accepted: {receipt.message}")
                return 0

            run_command(body)

    decision_command("approve", DecisionOutcome.APPROVE, "Approve CASE_ID.")
    decision_command("reject", DecisionOutcome.REJECT, "Reject CASE_ID.")
    decision_command("request-info", DecisionOutcome.REQUEST_INFO, "Send CASE_ID back to gathering with a question (--reason).")

    @cli.command()
    @state_dir_option
    @click.argument("case_id")
    @click.option("--json", "as_json", is_flag=True)
    def show(state_dir: Path | None, case_id: str, as_json: bool) -> None:
        """Brief, findings, proposal, precedents, gate, deadlines, who may decide and rejected attempts."""
        settings = load_settings(state_dir)

        async def body() -> int:
            cases = CaseClient(await connect_client(settings), settings.task_queue)
            try:
                view = await cases.get_case(case_id)
            except CaseError as err:
                click.echo(f"hitl: {err}", err=True)
                return 1
            click.echo(view.model_dump_json(indent=2) if as_json else render_case(view))
            return 0

        run_command(body)

    @cli.command()
    @state_dir_option
    @click.argument("case_id")
    @click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
    def trace(state_dir: Path | None, case_id: str, fmt: str) -> None:
        """Print the recorded decision trace of CASE_ID."""
        settings = load_settings(state_dir)

        async def body() -> int:
            database = resolve_database_url(settings)
            conn = await connect(database.value, source=database.source)
            try:
                row = await conn.fetchrow(
                    "SELECT id, trace, recorded_at FROM decision_traces WHERE case_id = $1 ORDER BY id DESC LIMIT 1",
                    case_id,
                )
            finally:
                await conn.close()
            if row is None:
                click.echo(f"hitl: no decision trace recorded for {case_id} (not decided yet, or unknown case)", err=True)
                return 1
            stored = json.loads(row["trace"])  # jsonb does not keep key order: restore the trace's own
            order = [name for name in DecisionTrace.model_fields if name in stored] + sorted(set(stored) - set(DecisionTrace.model_fields))
            document = {name: stored[name] for name in order}
            document.update(trace_id=row["id"], recorded_at=row["recorded_at"].isoformat())
            if fmt == "json":
                click.echo(json.dumps(document, indent=2))
            else:
                click.echo(yaml.dump(document, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True), nl=False)
            return 0

        run_command(body)

    @cli.command()
    @state_dir_option
    def seed(state_dir: Path | None) -> None:
        """Fill the demo world (accounts, vendors, people, reviewer groups, past decisions) if it is empty."""
        from activities.seed import seed_demo_world

        settings = load_settings(state_dir)

        async def body() -> int:
            database = resolve_database_url(settings)
            conn = await connect(database.value, source=database.source)
            try:
                seeded = await seed_demo_world(conn)
            finally:
                await conn.close()
            click.echo("seeded the demo world" if seeded else "demo world already present; nothing changed")
            return 0

        run_command(body)


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (the brief) as literal blocks, so the trace reads like the brief did."""


def _represent_str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)


def render_case(view: CaseView) -> str:
    lines = [f"{view.case_id}", f"  {view.ask}", f"  state: {view.state.value}   policy: {view.policy}   requester: {view.requester}"]
    if view.gate:
        g = view.gate
        lines += [
            f"  gate: {g.title}, level {g.level + 1} ({g.level_title}, group {g.group})",
            f"  may decide now: {', '.join(g.may_decide) or 'nobody on the roster'}",
            f"  reminder at {g.remind_at:%Y-%m-%d %H:%M}Z; {g.deadline_action} at {g.next_deadline:%Y-%m-%d %H:%M}Z",
        ]
        for e in g.escalations:
            lines.append(f"  escalated to level {e.to_level + 1} ({e.to_group}) at {e.at:%Y-%m-%d %H:%M}Z")
    if view.decision:
        d = view.decision
        lines.append(f"  decided: {d.outcome} by {d.decided_by} via {d.via}: {d.reason}")
    for r in view.rounds:
        lines.append(f"  round: request_info by {r.decided_by}: {r.reason}")
    if view.rejected_attempts:
        lines.append("  rejected attempts:")
        for a in view.rejected_attempts:
            lines.append(f"    {a.at:%Y-%m-%d %H:%M:%S}Z {a.via} {a.reviewer or '?'}: {a.error}")
    if view.brief:
        lines += ["", view.brief]
    return "\n".join(lines)
