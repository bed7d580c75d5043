"""`hitl policy whatif FILE`: what a proposed policy would have done with past cases (gates/whatif.py).

Reads only: the policy file and the recorded traces. No workflow runs, no connector is called, nothing is written.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click

from activities.policy_files import load_policy_file
from activities.store.trace_reads import cited_precedents, decided_traces
from gates.policy import PolicyError
from gates.text import terminal_text
from gates.whatif import CaseWhatIf, WhatIfReport, what_if
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.policy.options import PAST, SINCE


@click.command()
@state_dir_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--since", type=SINCE, default=None, help="Decided within this window (30d) or since this date [default: all].")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@pass_app
def whatif(app: Application, file: Path, since: datetime | None, as_json: bool) -> None:
    """What the policy in FILE would have done with the past cases of its kind.

    It is re-evaluated against the evidence their traces recorded: which cases would change path
    (a human needed or not, another minimum level or gate) or proposal, and which a human rejected
    that would now pass without one. A case whose trace lacks a fact the policy needs is "cannot
    tell", never guessed."""
    app.settings  # noqa: B018 -- a configuration error comes first
    try:
        proposed = load_policy_file(file)  # as strict as the worker's loader: a bad file is one line
    except PolicyError as err:
        app.fail(one_line(str(err)), 2)

    async def body() -> int:
        conn = await app.database()
        recorded = await decided_traces(conn, since=since, kind=proposed.kind)
        cited = await cited_precedents(conn, [c for t in recorded.traces for c in t.precedents_cited])
        await app.close_database()
        report = what_if(proposed, recorded.traces, cited, since=since)
        if as_json:
            document = report.model_dump(mode="json")
            document["unreadable_traces"] = recorded.unreadable
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            click.echo(render_text(report, unreadable=recorded.unreadable))
        return 0

    app.run(body)


def _case_line(case: CaseWhatIf) -> str:
    who = terminal_text(case.decided_by, one_line=True)
    decided = f"{PAST.get(case.outcome, case.outcome)} by {who} via {case.decided_via}, {case.decided_at:%Y-%m-%d}"
    head = f"  {case.case_id} ({case.policy}, {decided})"
    if case.status == "cannot_tell":
        return f"{head}: cannot tell: {'; '.join(case.unknown)}"
    line = f"{head}: {'; '.join(case.changes)}"
    if case.rejected_would_pass:
        line += "  << REJECTED by a human, would now pass without one"
    return line


def render_text(report: WhatIfReport, *, unreadable: list[str] | None = None) -> str:
    """The report as `hitl policy whatif` prints it: totals, then every case that would change or cannot be told."""
    t = report.totals
    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    lines = [
        f"{report.policy} over {t.cases} past {report.kind} cases, {window}:",
        f"  {t.changed} would change ({t.path_changed} path: {t.human_to_none} no longer need a human, "
        f"{t.none_to_human} would need one, {t.level_changed} another minimum level, {t.gate_changed} another gate; "
        f"{t.proposal_changed} proposal), {t.unchanged} unchanged, {t.cannot_tell} cannot tell",
        f"  {t.rejected_would_pass} rejected by a human would now pass without one"
        + (f": {', '.join(report.rejected_would_pass)}" if report.rejected_would_pass else ""),
    ]
    if unreadable:
        lines.append(f"  unreadable traces (left out): {', '.join(unreadable)}")
    changed = [c for c in report.cases if c.status == "changed"]
    unknown = [c for c in report.cases if c.status == "cannot_tell"]
    if changed:
        lines += ["", "would change:", *(_case_line(c) for c in changed)]
    if unknown:
        lines += ["", "cannot tell:", *(_case_line(c) for c in unknown)]
    return "\n".join(lines)
