"""`hitl inbox`: the cases waiting for a decision, oldest first; `--awaiting-info`: those waiting for an answer."""

from __future__ import annotations

import json

import click

from activities.store.directory import reviewer_groups
from gates.cases import KIND_ALIASES
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.render import awaiting_footer, inbox_empty_message, inbox_footer, print_awaiting, print_inbox

# How many cases `hitl inbox` shows without --limit or --all.
INBOX_PAGE = 50


@click.command()
@state_dir_option
@click.option("--gate", help="Only this gate: finance, ops, security.")
@click.option("--reviewer", help="Only what this reviewer may decide now (never their own requests).")
@click.option("--kind", help="Only this kind: renewal, procurement, access (or the full kind name).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help=f"Show the oldest N cases [default: {INBOX_PAGE}].")
@click.option("--all", "show_all", is_flag=True, help="Show every waiting case (slower with thousands).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects (the same page).")
@click.option(
    "--awaiting-info",
    "awaiting_info",
    is_flag=True,
    help="Instead: the cases waiting for the answer to a reviewer's question, who is asked, and when it is due.",
)
@click.option("--asked", default=None, metavar="PERSON", help="With --awaiting-info: only the questions PERSON is asked.")
@pass_app
def inbox(
    app: Application,
    gate: str | None,
    reviewer: str | None,
    kind: str | None,
    limit: int | None,
    show_all: bool,
    as_json: bool,
    awaiting_info: bool,
    asked: str | None,
) -> None:
    """Cases waiting for a decision, oldest first: ask, gate, level, age and time to the next escalation.
    With --awaiting-info, the cases waiting for an answer instead: who is asked, by whom, and by when."""
    app.settings  # noqa: B018 -- a configuration error comes first
    if kind is not None and kind.strip().lower() not in KIND_ALIASES:
        app.fail(f"unknown kind {kind!r}; one of {', '.join(sorted(KIND_ALIASES))}")
    if show_all and limit is not None:
        app.fail("--limit and --all: give one of them")
    if awaiting_info and reviewer is not None:
        app.fail("--awaiting-info lists questions, which nobody decides: give --asked PERSON, not --reviewer")
    if asked is not None and not awaiting_info:
        app.fail("--asked goes with --awaiting-info")
    if awaiting_info:
        _awaiting(app, gate=gate, kind=kind, asked=asked, limit=None if show_all else limit or INBOX_PAGE, as_json=as_json)

    async def body() -> int:
        groups: list[str] | None = None
        if reviewer is not None:  # the directory, read once: which groups the reviewer sits in
            groups = await reviewer_groups(await app.database(), reviewer)
            await app.close_database()
        page = await (await app.cases()).inbox(
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

    app.run(body)


def _awaiting(
    app: Application, *, gate: str | None, kind: str | None, asked: str | None, limit: int | None, as_json: bool
) -> None:
    """`hitl inbox --awaiting-info`: the cases waiting for an answer, longest first."""

    async def body() -> int:
        page = await (await app.cases()).awaiting_info(gate=gate, kind=kind, asked=asked, limit=limit)
        footer = awaiting_footer(len(page.items), page.total)
        if as_json:
            click.echo(json.dumps([item.model_dump(mode="json") for item in page.items], indent=2))
            if not page.complete:
                click.echo(f"hitl: {footer}", err=True)
        elif not page.items:
            filters = [f"{name} {value}" for name, value in (("gate", gate), ("kind", kind)) if value]
            who = f" from {asked}" if asked else ""
            click.echo(f"no cases awaiting an answer{who}" + (f" ({', '.join(filters)})" if filters else ""))
        else:
            print_awaiting(page.items)
            click.echo(footer)
        return 0

    app.run(body)
