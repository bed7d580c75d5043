"""`hitl policy suggest [--kind K] [--out PATH]`: a proposed policy file from consistent precedent (gates/suggest.py).

Reads the active policy and the recorded decisions; writes only the proposed file (never over an
existing one). Activates nothing: the file is a proposal for `hitl policy propose`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from activities.policy_files import newest_policy_texts
from activities.store.policy_activations import active_policy
from activities.store.trace_reads import decided_traces
from gates.cases import KIND_ALIASES, CaseKind
from gates.policy import Policy, PolicyError
from gates.suggest import DEFAULT_MIN_CASES, Suggestion, next_version
from gates.suggest import suggest as suggest_policy
from gates.text import terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.policy.show import PolicyFiles, activation_read, policy_directory


@click.command()
@state_dir_option
@click.option("--kind", type=click.Choice(sorted(KIND_ALIASES)), default=None, help="Only this kind's policy [default: all].")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory to write the proposed file into, or the file itself (named <policy>_v<M>_<N>.yaml) [default: .].",
)
@click.option("--min-cases", type=click.IntRange(min=1), default=DEFAULT_MIN_CASES, show_default=True,
              help="Consistent verified decisions a rule needs before anything is suggested.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@pass_app
def suggest(app: Application, kind: str | None, out: Path | None, min_cases: int, as_json: bool) -> None:
    """Propose a relaxed policy where verified reviewers always approved the cases a rule sent them.

    A consistent rule has its threshold moved to cover the band they approved, or moves one
    automation level up (shadow -> assist -> auto; a customer_commitment rule never reaches auto).
    The file carries the evidence in its top comments. Nothing is activated."""
    directory = policy_directory(app)
    kinds = [KIND_ALIASES[kind]] if kind else list(CaseKind)
    if out is not None and out.is_file():
        app.fail(f"{terminal_text(str(out), one_line=True)} exists; suggest never overwrites a file", 2)
    if out is not None and not out.is_dir() and len(kinds) > 1:
        app.fail("--out names a file: give --kind too (one kind, one file), or a directory", 2)

    async def body() -> int:
        try:
            return await suggest_all()
        except PolicyError as err:  # a broken file or active text: one line, nothing written for that kind
            app.fail(one_line(str(err)), 2)

    async def suggest_all() -> int:
        conn = await app.database()
        bases: dict[CaseKind, tuple[Policy, str, str]] = {}
        files = None
        for k in kinds:
            activation = await activation_read(active_policy(conn, k))
            if activation is not None:
                bases[k] = (activation.policy(), activation.policy_text, "active")
            else:
                files = files or newest_policy_texts(directory)
                policy, text = files[k]
                bases[k] = (policy, text, f"newest file in {directory}; no version is active yet")
        traces = {k: await decided_traces(conn, since=None, kind=k) for k in kinds}
        await app.close_database()
        proposals = PolicyFiles.read(directory)
        results: list[tuple[Suggestion, Path | None, str]] = []
        for k in kinds:
            policy, text, basis = bases[k]
            taken = [p.version for _, p, _ in proposals.policies if p.policy_id == policy.policy_id]
            result = suggest_policy(policy, text, traces[k].traces, min_cases=min_cases, version=next_version(policy, taken))
            results.append((result, _write(app, result, out) if result.text else None, basis))
        if as_json:
            document = [
                {**r.model_dump(mode="json", exclude={"text"}), "basis": basis, "written_to": str(path) if path else None}
                for r, path, basis in results
            ]
            click.echo(json.dumps({"min_cases": min_cases, "kinds": document}, indent=2, ensure_ascii=False))
        else:
            click.echo(render_text(results, min_cases))
        return 0

    app.run(body)


def _write(app: Application, result: Suggestion, out: Path | None) -> Path:
    name = f"{result.ref}.yaml"
    target = out or Path.cwd()
    path = target / name if target.is_dir() else target
    if path.name != name:
        shown = terminal_text(path.name, one_line=True)
        app.fail(f"the proposed file must be named {name} (policy_id and version), not {shown}", 2)
    if path.exists():
        app.fail(f"{terminal_text(str(path), one_line=True)} exists; suggest never overwrites a file", 2)
    assert result.text is not None
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(result.text)
    except OSError as err:
        app.fail(f"cannot write {terminal_text(str(path), one_line=True)}: {err.strerror or type(err).__name__}", 2)
    return path


def render_text(results: list[tuple[Suggestion, Path | None, str]], min_cases: int) -> str:
    lines: list[str] = []
    for result, path, basis in results:
        lines.append(f"{result.kind}: {result.based_on} ({terminal_text(basis, one_line=True)})")
        if not result.suggestions:
            lines.append(f"  no consistent precedent (at least {min_cases} verified decisions, all approved): nothing written")
        for s in result.suggestions:
            lines.append(f"  {s.rule_id}: {s.change}: {s.why}")
        for note in result.not_suggested:
            lines.append(f"  not suggested: {note}")
        if path is not None:
            lines.append(f"  wrote {result.ref} to {terminal_text(str(path), one_line=True)} (a proposal: nothing is activated)")
    return "\n".join(lines)
