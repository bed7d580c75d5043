"""`hitl start | inbox | approve | reject | request-info | show | trace | schema | seed`: the decision loop from a terminal.

Every command that takes a CASE accepts a full case ID, a unique case ID prefix, or a business key
(`acme_enterprise/fy26`), resolved by `CaseClient.resolve_case_id`. Errors are one line on stderr
with a non-zero exit: 1 for a case that is unknown, ambiguous, not allowed, already decided or
not answered by a worker; 2 for bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from activities.db import connect
from gates.cases import KIND_ALIASES, REQUEST_MODELS
from gates.gate import Decision, DecisionOutcome, OperatorAction, format_validation_error
from gates.trace import DecisionTrace
from workers.case_files import CaseFileError, load_case_file, one_line
from workers.cases import MAX_CANDIDATES, AmbiguousCase, CaseClient, CaseError, CaseNotFound, DecisionRejected
from workers.client import connect_client
from workers.config import resolve_database_url
from workers.inbox import UnknownReviewer, reviewer_groups
from workers.render import (
    case_renderable,
    emit,
    inbox_empty_message,
    inbox_footer,
    print_inbox,
    render_case,
    stdout_is_terminal,
)

# How long `hitl approve|reject|request-info` waits for a worker to take the decision.
DECISION_TIMEOUT_SECONDS = 30.0
# How many cases `hitl inbox` shows without --limit or --all.
INBOX_PAGE = 50

__all__ = ["register", "render_case", "schemas"]


def schemas(kind: str | None = None) -> dict:
    """JSON Schemas of the case payloads (all kinds, or one), the decision, and (for all kinds) the operator action."""
    kinds = [KIND_ALIASES[kind.lower()]] if kind else list(REQUEST_MODELS)
    document: dict = {
        "cases": {k.value: REQUEST_MODELS[k].model_json_schema() for k in kinds},
        "decision": Decision.model_json_schema(),
    }
    if kind is None:
        document["operator_action"] = OperatorAction.model_json_schema()
    return document


def register(cli: click.Group, *, load_settings, run_command, state_dir_option, fail) -> None:
    """Add the case commands to the `hitl` group (kept apart from process commands for readability)."""

    @cli.command()
    @state_dir_option
    @click.argument("kind", type=click.Choice(sorted(KIND_ALIASES), case_sensitive=False), metavar="KIND")
    # a plain path: workers/case_files.py says what is wrong with it in one line (click's own checks print a four-line usage error)
    @click.option("--file", "file_", type=click.Path(path_type=Path), required=True, help="The case payload, a JSON object.")
    @click.option("--json", "as_json", is_flag=True, help='Print {"case_id": ...}.')
    def start(state_dir: Path | None, kind: str, file_: Path, as_json: bool) -> None:
        """Start a case of KIND (renewal, procurement, access) from a JSON file, or find the running one."""
        settings = load_settings(state_dir)
        model = REQUEST_MODELS[KIND_ALIASES[kind.lower()]]
        try:
            request = load_case_file(file_, model)
        except CaseFileError as err:
            fail(str(err))

        async def body() -> int:
            cases = CaseClient(await connect_client(settings), settings.task_queue)
            started = await cases.start_case(request)
            if as_json:
                click.echo(json.dumps({"case_id": started.case_id, "created": started.created}))
            else:
                click.echo(started.case_id if started.created else f"{started.case_id} (already exists)")
            return 0

        run_command(body)

    @cli.command()
    @state_dir_option
    @click.option("--gate", help="Only this gate: finance, ops, security.")
    @click.option("--reviewer", help="Only what this reviewer may decide now (never their own requests).")
    @click.option("--kind", help="Only this kind: renewal, procurement, access (or the full kind name).")
    @click.option(
        "--limit", type=click.IntRange(min=1), default=None, help=f"Show the oldest N cases [default: {INBOX_PAGE}]."
    )
    @click.option("--all", "show_all", is_flag=True, help="Show every waiting case (slower with thousands).")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects (the same page).")
    def inbox(
        state_dir: Path | None,
        gate: str | None,
        reviewer: str | None,
        kind: str | None,
        limit: int | None,
        show_all: bool,
        as_json: bool,
    ) -> None:
        """Cases waiting for a decision, oldest first: ask, gate, level, age and time to the next escalation."""
        settings = load_settings(state_dir)
        if kind is not None and kind.strip().lower() not in KIND_ALIASES:
            fail(f"unknown kind {kind!r}; one of {', '.join(sorted(KIND_ALIASES))}")
        if show_all and limit is not None:
            fail("--limit and --all: give one of them")

        async def body() -> int:
            groups: list[str] | None = None
            if reviewer is not None:  # the directory, read once: which groups the reviewer sits in
                database = resolve_database_url(settings)
                conn = await connect(database.value, source=database.source)
                try:
                    groups = await reviewer_groups(conn, reviewer)
                except UnknownReviewer as err:
                    click.echo(f"hitl: {err}", err=True)
                    return 1
                finally:
                    await conn.close()
            cases = CaseClient(await connect_client(settings), settings.task_queue)
            page = await cases.inbox(
                gate=gate, kind=kind, reviewer=reviewer, reviewer_groups=groups, limit=None if show_all else limit or INBOX_PAGE
            )
            footer = inbox_footer(len(page.items), page.total)
            if as_json:
                click.echo(json.dumps([item.model_dump(mode="json") for item in page.items], indent=2))
                if not page.complete:  # the list alone does not say that more are waiting
                    click.echo(f"hitl: {footer}", err=True)
            elif not page.items:
                click.echo(inbox_empty_message(gate=gate, kind=kind, reviewer=reviewer))
            else:
                print_inbox(page.items)
                click.echo(footer)
            return 0

        run_command(body)

    def decision_command(name: str, outcome: DecisionOutcome, help_text: str) -> None:
        @cli.command(name=name, help=help_text)
        @state_dir_option
        @click.argument("case")
        @click.option("--as", "reviewer", required=True, help="Your reviewer id.")
        @click.option("--reason", required=True, help="Why (required).")
        def command(state_dir: Path | None, case: str, reviewer: str, reason: str) -> None:
            settings = load_settings(state_dir)
            try:
                decision = Decision(outcome=outcome, reviewer=reviewer, reason=reason)
            except ValidationError as err:
                fail(format_validation_error(err))

            async def body() -> int:
                cases = CaseClient(await connect_client(settings), settings.task_queue)
                try:
                    case_id = await cases.resolve_case_id(case)
                    receipt = await cases.decide(case_id, decision, timeout=DECISION_TIMEOUT_SECONDS)
                except DecisionRejected as err:
                    click.echo(f"hitl: rejected: {one_line(str(err))}", err=True)
                    return 1
                except CaseError as err:  # may quote CASE as typed: escape sequences are shown, not sent to the terminal
                    click.echo(f"hitl: {one_line(str(err))}", err=True)
                    return 1
                click.echo(f"accepted: {receipt.message}")
                return 0

            run_command(body)

    decision_command("approve", DecisionOutcome.APPROVE, "Approve CASE (case ID, unique prefix or business key).")
    decision_command("reject", DecisionOutcome.REJECT, "Reject CASE (case ID, unique prefix or business key).")
    decision_command(
        "request-info", DecisionOutcome.REQUEST_INFO, "Send CASE back to gathering with a question (--reason)."
    )

    @cli.command()
    @state_dir_option
    @click.argument("case")
    @click.option("--json", "as_json", is_flag=True)
    def show(state_dir: Path | None, case: str, as_json: bool) -> None:
        """CASE (case ID, unique prefix or business key): brief, findings, proposal, precedents, gate,
        deadlines, who may decide, rejected attempts and operator actions."""
        settings = load_settings(state_dir)

        async def body() -> int:
            cases = CaseClient(await connect_client(settings), settings.task_queue)
            try:
                view = await cases.get_case(await cases.resolve_case_id(case))
            except CaseError as err:
                click.echo(f"hitl: {err}", err=True)
                return 1
            if as_json:
                click.echo(view.model_dump_json(indent=2))
            else:
                terminal = stdout_is_terminal()
                emit(case_renderable(view, terminal=terminal), terminal=terminal)
            return 0

        run_command(body)

    @cli.command()
    @state_dir_option
    @click.argument("case")
    @click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
    def trace(state_dir: Path | None, case: str, fmt: str) -> None:
        """Print the recorded decision trace of CASE (case ID, unique prefix or business key)."""
        settings = load_settings(state_dir)

        async def body() -> int:
            database = resolve_database_url(settings)
            conn = await connect(database.value, source=database.source)
            try:
                row = await _latest_trace(conn, case)
                if row is None:  # not an exact case ID: resolve it through Temporal, then the record's keys
                    cases = CaseClient(await connect_client(settings), settings.task_queue)
                    try:
                        case_id = await cases.resolve_case_id(case)
                    except CaseNotFound as err:
                        recorded = await _recorded_case_ids(conn, case)
                        if len(recorded) != 1:
                            problem = (
                                f"{case} matches {len(recorded)} recorded cases: {', '.join(recorded[:MAX_CANDIDATES])}"
                                if recorded
                                else f"{err}: no decision trace recorded"
                            )
                            click.echo(f"hitl: {problem}", err=True)
                            return 1
                        case_id = recorded[0]
                    except AmbiguousCase as err:
                        click.echo(f"hitl: {err}", err=True)
                        return 1
                    row = await _latest_trace(conn, case_id)
                    if row is None:
                        click.echo(f"hitl: no decision trace recorded for {case_id} (not decided yet)", err=True)
                        return 1
            finally:
                await conn.close()
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
    @click.argument("kind", required=False, metavar="[KIND]")
    def schema(kind: str | None) -> None:
        """JSON Schemas: {"cases": {...}, "decision": ..., "operator_action": ...}; with KIND, that case and the decision."""
        if kind is not None and kind.strip().lower() not in KIND_ALIASES:
            fail(f"unknown kind {kind!r}; one of {', '.join(sorted(KIND_ALIASES))}")
        click.echo(json.dumps(schemas(kind and kind.strip()), indent=2))

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


async def _latest_trace(conn, case_id: str):
    return await conn.fetchrow(
        "SELECT id, trace, recorded_at FROM decision_traces WHERE case_id = $1 ORDER BY id DESC LIMIT 1", case_id
    )


async def _recorded_case_ids(conn, business_key: str) -> list[str]:
    """Decided cases Temporal no longer knows (past its retention), by business key."""
    rows = await conn.fetch(
        "SELECT DISTINCT case_id FROM decision_traces WHERE business_key = $1 ORDER BY case_id LIMIT $2",
        business_key,
        MAX_CANDIDATES + 1,
    )
    return [row["case_id"] for row in rows]
