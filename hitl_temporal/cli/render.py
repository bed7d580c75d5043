"""Terminal output of the case commands: rich tables and label grids on a terminal, plain text when piped.

Piped output (a file, `grep`, a test) has no ANSI codes, no wrapping and no trailing blanks, so a
case ID can always be copied whole. Data never goes through rich markup or emoji parsing: a reason
like "[draft] see :memo:" prints as typed.

Every string from a case goes through `gates.text` on its way out, on a terminal and piped alike: no
escape sequence, CR or bidi override reaches the output raw, and what people wrote (reasons, the
reviewer a rejected sender claimed, errors quoting them, why someone may not decide, a
delegation's note) is shown in “ ” apart from our labels.
"""

from __future__ import annotations

import io
import shlex
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

import click
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markdown import Markdown
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from gates.cases import KIND_ALIASES
from gates.gate import AcceptedDecision, Identity, RejectedAttempt
from gates.info_request import InfoRequest
from gates.text import quoted, terminal_text
from gates.trace import CaseView, GateView
from hitl_temporal.inbox import AwaitingItem, InboxItem, age_text, answer_due, next_step

# Wide enough that piped lines never wrap; trailing padding is stripped.
PLAIN_WIDTH = 10_000

SHORT_KIND: dict[str, str] = {kind.value: alias for alias, kind in KIND_ALIASES.items() if alias != kind.value}


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def emit(renderable: RenderableType, *, terminal: bool | None = None) -> None:
    """Print styled on a terminal; as plain text otherwise."""
    terminal = stdout_is_terminal() if terminal is None else terminal
    if terminal:
        Console(highlight=False, emoji=False).print(renderable)
    else:
        click.echo(plain(renderable))


def plain(renderable: RenderableType) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=PLAIN_WIDTH, color_system=None, force_terminal=False, highlight=False, emoji=False, soft_wrap=False
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


# -- inbox -----------------------------------------------------------------------------------


INBOX_COLUMNS = ("CASE", "KIND", "ASK", "GATE", "LEVEL", "AGE", "NEXT")
# Narrowest the ASK column may get before the inbox switches to one block per case.
MIN_ASK_WIDTH = 24


def _inbox_cells(item: InboxItem) -> list[str]:
    cells = [
        item.case_id,
        SHORT_KIND.get(item.kind, item.kind),
        item.ask,
        item.gate,
        f"{item.escalation_level + 1} {item.reviewer_group}",
        age_text(item.age_seconds),
        next_step(item),
    ]
    return [terminal_text(cell, one_line=True) for cell in cells]


def _next_style(item: InboxItem) -> str:
    return "red" if item.time_left_seconds is not None and item.time_left_seconds < 0 else ""


def inbox_table(items: list[InboxItem]) -> Table:
    """One row per case. The case ID is never wrapped or cut: it is what a reviewer copies into `hitl show`."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    widest = max((len(i.case_id) for i in items), default=4)
    table.add_column("CASE", no_wrap=True, min_width=widest, style="cyan")
    table.add_column("KIND", no_wrap=True)
    table.add_column("ASK", overflow="fold", min_width=MIN_ASK_WIDTH)
    table.add_column("GATE", no_wrap=True)
    table.add_column("LEVEL", no_wrap=True)
    table.add_column("AGE", no_wrap=True, justify="right")
    table.add_column("NEXT", no_wrap=True)
    for item in items:
        cells = [Text(cell) for cell in _inbox_cells(item)]
        cells[-1].stylize(_next_style(item))
        table.add_row(*cells)
    return table


def inbox_table_width(items: list[InboxItem]) -> int:
    """Width the table needs with the ASK column at its narrowest (two spaces between columns)."""
    widths = [len(h) for h in INBOX_COLUMNS]
    for item in items:
        widths = [max(w, len(c)) for w, c in zip(widths, _inbox_cells(item), strict=True)]
    widths[2] = MIN_ASK_WIDTH
    return sum(widths) + 2 * (len(widths) - 1)


def inbox_blocks(items: list[InboxItem]) -> Group:
    """The narrow-terminal form: the case ID on its own line, then the ask, then the rest."""
    blocks: list[RenderableType] = []
    for item in items:
        case_id, kind, ask, gate, _, age, step = _inbox_cells(item)
        level = f"level {item.escalation_level + 1} ({terminal_text(item.reviewer_group, one_line=True)})"
        details = Text(f"  {kind} · {gate} gate, {level} · waiting {age} · ")
        details.append(step, style=_next_style(item))
        blocks += [Text(case_id, style="bold cyan", no_wrap=True, overflow="ignore"), Text(f"  {ask}"), details]
    return Group(*blocks)


def print_inbox(items: list[InboxItem], *, terminal: bool | None = None) -> None:
    """The table; on a terminal too narrow for it, one block per case."""
    terminal = stdout_is_terminal() if terminal is None else terminal
    if not terminal:
        click.echo(plain(inbox_table(items)))
        return
    console = Console(highlight=False, emoji=False)
    console.print(inbox_table(items) if console.width >= inbox_table_width(items) else inbox_blocks(items))


def inbox_footer(shown: int, total: int) -> str:
    """`3 waiting, oldest first`, or when the page is not all of them, how to see more."""
    if shown >= total:
        return f"{total:,} waiting, oldest first"
    return f"{shown:,} of {total:,} waiting, oldest first (--limit N or --all for more)"


def inbox_empty_message(*, gate: str | None, kind: str | None, reviewer: str | None) -> str:
    filters = [f"{name} {value}" for name, value in (("gate", gate), ("kind", kind)) if value]
    who = f" for {reviewer}" if reviewer else ""
    return f"no cases waiting{who}" + (f" ({', '.join(filters)})" if filters else "")


def awaiting_table(items: list[AwaitingItem]) -> Table:
    """`hitl inbox --awaiting-info`: one row per case waiting for an answer, who is asked and by whom."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    widest = max((len(i.case_id) for i in items), default=4)
    table.add_column("CASE", no_wrap=True, min_width=widest, style="cyan")
    for name in ("KIND", "ASKED", "BY", "WAITING", "DUE"):
        table.add_column(name, no_wrap=True)
    table.add_column("QUESTION", overflow="fold", min_width=MIN_ASK_WIDTH)
    for item in items:
        cells = [
            item.case_id,
            SHORT_KIND.get(item.kind, item.kind),
            item.asked or "?",
            item.asked_by or "?",
            age_text(item.age_seconds),
            answer_due(item),
            quoted(item.question) if item.question is not None else "(the case did not say: is a worker running?)",
        ]
        texts = [Text(terminal_text(cell, one_line=True)) for cell in cells]
        if item.time_left_seconds is not None and item.time_left_seconds < 0:
            texts[5].stylize("red")
        table.add_row(*texts)
    return table


def print_awaiting(items: list[AwaitingItem], *, terminal: bool | None = None) -> None:
    terminal = stdout_is_terminal() if terminal is None else terminal
    if not terminal:
        click.echo(plain(awaiting_table(items)))
        return
    Console(highlight=False, emoji=False).print(awaiting_table(items))


def awaiting_footer(shown: int, total: int) -> str:
    if shown >= total:
        return f"{total:,} awaiting an answer, longest first"
    return f"{shown:,} of {total:,} awaiting an answer, longest first (--limit N or --all for more)"


# -- one case --------------------------------------------------------------------------------


def _when(at: datetime, now: datetime) -> str:
    delta = int((at - now).total_seconds())
    relative = f"in {age_text(delta)}" if delta >= 0 else f"{age_text(delta)} ago"
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M}Z ({relative})"


def _stamp(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def case_details(view: CaseView, now: datetime | None = None, *, ui_url: str | None = None) -> Table:
    """The case as label/value rows; labels right-aligned so each reads `label: value`."""
    now = now or datetime.now(UTC)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", style="bold", no_wrap=True)
    grid.add_column(overflow="fold")

    def row(label: str, value: str, style: str = "") -> None:
        grid.add_row(Text(f"{label}:" if label else ""), Text(terminal_text(value, one_line=True), style=style))

    def rows(label: str, values: Iterable[str], style: str = "") -> None:
        for index, value in enumerate(values):
            row(label if index == 0 else "", value, style)

    row("state", view.state.value, "bold")
    row("kind", view.kind)
    row("policy", view.policy or "(not resolved yet)")
    row("requester", view.requester)
    if ui_url:  # the case in the Temporal Web UI (activities/channels/links.py)
        row("web UI", ui_url)
    if view.reason_codes:
        row("needs a human", ", ".join(view.reason_codes))
    if view.gate:
        g = view.gate
        levels = g.level + len(g.eligible_groups)
        row("gate", f"{g.title}, level {g.level + 1} of {levels} ({g.level_title}, group {g.group})")
        row("may decide now", ", ".join(g.may_decide) or "nobody on the roster", "green")
        row("eligible groups", ", ".join(g.eligible_groups))
        row("gate opened", _when(g.opened_at, now))
        row("reminder", _when(g.remind_at, now))
        row("next deadline", f"{g.deadline_action} at {_when(g.next_deadline, now)}")
        rows(
            "escalations",
            (f"to level {e.to_level + 1} ({e.to_group}) at {_stamp(e.at)}: {quoted(e.reason)}" for e in g.escalations),
        )
        rows("reminders", (f"level {r.level + 1} ({r.group}) at {_stamp(r.at)}" for r in g.reminders))
        for label, value in _gate_trust(g, view.case_id):
            row(label, value)
        rows("routing", g.routing)
        if g.quorum is not None:
            approved, needed = ", ".join(g.approvals) or "nobody yet", ", ".join(g.still_needed) or "nothing"
            row("quorum", f"approved by {approved}; still needed: {needed}")
        rows("routing explained", (f"{person}: {quoted(why)}" for person, why in g.excluded.items()), "yellow")
    if view.decision:
        d = view.decision
        level = f" at level {d.level + 1}" if d.level >= 0 else ""
        row("decided", f"{d.outcome} by {d.decided_by} via {d.via}{level} at {_stamp(d.at)}: {quoted(d.reason)}", "bold")
        for label, value in _decision_trust(d):
            row(label, value)
    if view.info_request is not None and view.info_request.waiting:
        q = view.info_request
        row("question", f"by {q.asked_by} at {_stamp(q.asked_at)}: {quoted(q.question)}", "bold")
        row("asked", q.asked, "green")
        row("answer due", f"{_when(q.due_at, now)}; reminder {_when(q.remind_at, now)}")
        row("answer with", f"hitl answer {shlex.quote(view.case_id)} --as {q.asked} --text ...")
    rows("rounds", (f"request_info by {r.decided_by} at {_stamp(r.at)}: {quoted(r.reason)}" for r in view.rounds))
    rows("questions", (_info_round(r) for r in view.info_rounds))
    rows("rejected attempts", (_attempt(a) for a in view.rejected_attempts), "yellow")
    rows(
        "operator actions",
        (
            f"{_stamp(o.at)} {o.action} by {o.operator}{f' (group {o.group})' if o.group else ''}"
            + (f" ({_proven(o.identity)})" if o.identity else "")
            + f": {quoted(o.reason)}"
            + (f" -> {o.result}" if o.result else "")
            for o in view.operator_actions
        ),
    )
    return grid


IDENTITY_MODES = {
    "verified": "verified (a decision carries a proof of who decides: `hitl login`, or --as with the local issuer)",
    "asserted": "asserted (the reviewer named is taken at their word)",
}


def _gate_trust(g: GateView, case_id: str) -> list[tuple[str, str]]:
    """The evidence digest a decision names, the identity mode and the directory version (trusted gates)."""
    found: list[tuple[str, str]] = []
    if g.identity:
        found.append(("identity", IDENTITY_MODES.get(g.identity, g.identity)))
    if g.directory_version:
        found.append(("directory", f"version {g.directory_version}"))
    if g.digest:
        found.append(("evidence digest", f"{g.digest}  (hitl approve {case_id} --digest {g.digest} ...)"))
    return found


def _decision_trust(d: AcceptedDecision) -> list[tuple[str, str]]:
    """Who decided as the case established it, in whose seat, on which evidence and directory."""
    found: list[tuple[str, str]] = []
    if d.identity:
        found.append(("identity", _proven(d.identity)))
    if d.acting_for:
        note = f" ({quoted(d.delegation)})" if d.delegation else ""
        found.append(("delegation", f"{d.decided_by} for {d.acting_for}{note}"))
    if d.digest:
        found.append(("evidence digest", d.digest))
    if d.directory_version:
        found.append(("directory", f"version {d.directory_version}"))
    return found


def _proven(identity: Identity) -> str:
    """`vp_ops_raj, verified by hitl-local via submit_decision`, or `..., asserted via decide signal`."""
    if identity.mode == "verified":
        return f"{identity.person}, verified by {identity.issuer} via {identity.channel}"
    return f"{identity.person}, asserted via {identity.channel}"


def _info_round(r: InfoRequest) -> str:
    """`round 1: fin_rev_ana asked sales_rep_sam at <when>: “…” -> answered by sales_rep_sam at <when>: “…”`."""
    asked = f"round {r.round}: {r.asked_by} asked {r.asked} at {_stamp(r.asked_at)}: {quoted(r.question)}"
    if r.outcome == "answered":
        by = r.answered_by or r.asked
        at = f" at {_stamp(r.answered_at)}" if r.answered_at else ""
        answered = f" -> answered by {by}{at}: {quoted(r.answer or '')}"
        if r.attachment_name is not None:
            answered += f" (attached {quoted(r.attachment_name)}, {len(r.attachment_text or ''):,} characters)"
        return asked + answered
    if r.outcome == "no_answer":
        return asked + f" -> no answer by {_stamp(r.due_at)}"
    return asked + f" -> waiting for the answer (due {_stamp(r.due_at)})"


def _attempt(a: RejectedAttempt) -> str:
    """`<when> signal “cfo_jane”: “<why it was refused>”`: the reviewer is only what the sender claimed."""
    who = quoted(a.reviewer) if a.reviewer else "(no reviewer)"
    return f"{_stamp(a.at)} {a.via} {who}: {quoted(a.error)}"


class _Neutralized:
    """A renderable whose rendered text is neutralized once more: Markdown decodes character
    references (`&#x202E;`) after we neutralized its source, and briefs written before the
    brief quoted people's words still hold their text raw."""

    def __init__(self, renderable: RenderableType):
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            yield segment if segment.control else Segment(terminal_text(segment.text), segment.style)


def _brief(brief: str, *, terminal: bool) -> RenderableType:
    """On a terminal the brief's markdown is rendered (links as text, never as terminal hyperlinks);
    piped, it is printed as written. Its untrusted parts are code, so they stay literal either way."""
    safe = terminal_text(brief)
    return _Neutralized(Markdown(safe, hyperlinks=False)) if terminal else Text(safe)


def case_renderable(
    view: CaseView, *, terminal: bool, now: datetime | None = None, ui_url: str | None = None
) -> RenderableType:
    """Header, the label grid, then the brief (findings, precedents, proposal) as written by the summarizer."""
    header = [Text(terminal_text(view.case_id, one_line=True), style="bold cyan"), Text(terminal_text(view.ask, one_line=True))]
    parts: list[RenderableType] = [*header, Text(""), case_details(view, now, ui_url=ui_url)]
    if view.brief:
        parts += [Text(""), _brief(view.brief, terminal=terminal)]
    return Group(*parts)


def render_case(view: CaseView, now: datetime | None = None, *, ui_url: str | None = None) -> str:
    """The plain-text form of `hitl show` (what a pipe or a test sees)."""
    return plain(case_renderable(view, terminal=False, now=now, ui_url=ui_url))
