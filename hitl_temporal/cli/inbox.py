"""`hitl inbox`: the cases waiting for a decision, oldest first."""

from __future__ import annotations

import json

import click

from activities.store.directory import reviewer_groups
from gates.cases import KIND_ALIASES
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.render import inbox_empty_message, inbox_footer, print_inbox

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
@pass_app
def inbox(
    app: Application,
    gate: str | None,
    reviewer: str | None,
    kind: str | None,
    limit: int | None,
    show_all: bool,
    as_json: bool,
) -> None:
    """Cases waiting for a decision, oldest first: ask, gate, level, age and time to the next escalation."""
    app.settings  # noqa: B018 -- a configuration error comes first
    if kind is not None and kind.strip().lower() not in KIND_ALIASES:
        app.fail(f"unknown kind {kind!r}; one of {', '.join(sorted(KIND_ALIASES))}")
    if show_all and limit is not None:
        app.fail("--limit and --all: give one of them")

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
