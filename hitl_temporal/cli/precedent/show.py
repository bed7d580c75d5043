"""`hitl precedent show TRACE`: the precedent a decision trace became, where its trace sits in the chain,
and whether it was retracted (and why)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import click

from activities.store.precedents import TracePrecedent, precedent_of_trace, why_not_precedent
from gates.text import terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option

SCHEMA_BEHIND = "the database has no precedent retractions yet: run `hitl migrate` first"

trace_argument = click.argument("trace_id", metavar="TRACE", type=click.IntRange(min=1))


def unknown_trace(trace_id: int) -> str:
    return f"no decision trace {trace_id} (`hitl trace CASE` prints a case's trace_id)"


def not_precedent(found: TracePrecedent) -> str:
    """Why trace `found` has no precedent row."""
    if found.decided_via in ("update", "signal") and found.identity_mode == "verified":
        return f"trace {found.trace_id} has no precedent row"
    return f"trace {found.trace_id} is not precedent: {why_not_precedent(found.decided_via, found.identity_mode)}"


def _at(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def precedent_document(found: TracePrecedent) -> dict[str, Any]:
    precedent = found.precedent
    assert precedent is not None
    retracted = precedent["retracted_at"]
    return {
        "trace_id": found.trace_id,
        "case_id": found.case_id,
        "kind": found.kind,
        "outcome": found.outcome,
        "decided_by": found.decided_by,
        "decided_via": found.decided_via,
        "decided_at": found.decided_at.isoformat(),
        "identity": None
        if found.identity_mode is None
        else {"mode": found.identity_mode, "issuer": found.identity_issuer, "channel": found.identity_channel},
        "chain_global_seq": precedent["trace_global_seq"],
        "seeded": found.decided_via == "seed",
        "supersedes": found.supersedes,
        "superseded": found.superseded,
        "retracted": None
        if retracted is None
        else {
            "at": retracted.isoformat(),
            "by": precedent["retracted_by"],
            "identity": precedent["retracted_identity"],
            "reason": precedent["retracted_reason"],
        },
    }


def _who(found: TracePrecedent) -> str:
    decided_by = terminal_text(found.decided_by, one_line=True)
    if found.decided_via == "seed":
        return f"{decided_by} (seeded history of the demo world)"
    if found.identity_mode == "verified":
        issuer = terminal_text(found.identity_issuer or "?", one_line=True)
        return f"{decided_by} via {found.decided_via} (verified by {issuer})"
    return f"{decided_by} via {found.decided_via} ({found.identity_mode or 'identity not recorded'})"


def precedent_text(found: TracePrecedent) -> str:
    precedent = found.precedent
    assert precedent is not None
    seq = precedent["trace_global_seq"]
    if seq is not None:
        chain = f"global_seq {seq} (the trace's trace_recorded row)"
    else:
        chain = "- (seeded history: not in the audit chain)" if found.decided_via == "seed" else "- (not recorded)"
    retracted = precedent["retracted_at"]
    if retracted is None:
        status = "cited by new cases of its kind and band"
    else:
        identity = f" (identity {precedent['retracted_identity']})" if precedent["retracted_identity"] else ""
        by = terminal_text(precedent["retracted_by"], one_line=True)
        status = f"retracted {_at(retracted)} by {by}{identity}: {terminal_text(precedent['retracted_reason'], one_line=True)}"
    lines = [
        f"precedent of trace {found.trace_id}: case {terminal_text(found.case_id, one_line=True)} ({found.kind})",
        f"  outcome     {terminal_text(found.outcome, one_line=True)}, decided {_at(found.decided_at)}",
        f"  decided by  {_who(found)}",
        f"  chain       {chain}",
        f"  status      {status}",
    ]
    if found.supersedes is not None:
        lines.append(f"  supersedes  trace {found.supersedes} (an earlier run of the case)")
    if found.superseded:
        lines.append("  superseded  a later run of the case recorded a newer trace (`hitl trace CASE`)")
    return "\n".join(lines)


@click.command()
@state_dir_option
@trace_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@pass_app
def show(app: Application, trace_id: int, as_json: bool) -> None:
    """The precedent decision trace TRACE became: its case, outcome, who decided and how they were
    verified, its trace's position in the audit chain, and whether it was retracted and why.
    Exit 1 when there is no such trace or it is not precedent (only verified reviewers' decisions are)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        try:
            found = await precedent_of_trace(await app.database(), trace_id)
        except asyncpg.UndefinedColumnError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        if found is None:
            click.echo(f"hitl: {unknown_trace(trace_id)}", err=True)
            return 1
        if found.precedent is None:
            click.echo(f"hitl: {not_precedent(found)}", err=True)
            return 1
        click.echo(json.dumps(precedent_document(found), indent=2, ensure_ascii=False) if as_json else precedent_text(found))
        return 0

    app.run(body)
