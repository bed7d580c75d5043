"""`hitl trace CASE`: the case's current decision trace, as YAML or JSON, and which earlier ones it supersedes."""

from __future__ import annotations

import json

import asyncpg
import click
import yaml

from activities.store.traces import latest_policy_change, latest_trace, recorded_case_ids, superseded_traces
from gates.policy_change import CHANGE_ID_PREFIX
from gates.trace import DecisionTrace
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.client import MAX_CANDIDATES
from hitl_temporal.errors import CaseNotFound


@click.command()
@state_dir_option
@click.argument("case")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@pass_app
def trace(app: Application, case: str, fmt: str) -> None:
    """Print the current decision trace of CASE (case ID, unique prefix or business key), or the
    recorded decision of a policy change (`policy_change:<ref>`).

    A case has one current trace: after a reset or a re-run under the same ID, the newest decision's,
    listed with the earlier traces it supersedes (`supersedes`, newest first)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        conn = await app.database()
        if case.strip().startswith(CHANGE_ID_PREFIX):
            return await _policy_change(conn, case.strip(), fmt)
        row = await latest_trace(conn, case)
        if row is None:  # not an exact case ID: resolve it through Temporal, then the record's keys
            try:
                case_id = await (await app.cases()).resolve_case_id(case)
            except CaseNotFound as err:
                # decided cases Temporal no longer knows (past its retention), by business key
                recorded = await recorded_case_ids(conn, case, limit=MAX_CANDIDATES + 1)
                if len(recorded) != 1:
                    if recorded:
                        raise CaseNotFound(
                            f"{case} matches {len(recorded)} recorded cases: {', '.join(recorded[:MAX_CANDIDATES])}"
                        ) from err
                    raise CaseNotFound(f"{err}: no decision trace recorded") from err
                case_id = recorded[0]
            row = await latest_trace(conn, case_id)
            if row is None:
                raise CaseNotFound(f"no decision trace recorded for {case_id} (not decided yet)")
        stored = json.loads(row["trace"])  # jsonb does not keep key order: restore the trace's own
        fields = DecisionTrace.model_fields
        order = [name for name in fields if name in stored] + sorted(set(stored) - set(fields))
        document = {name: stored[name] for name in order}
        document.update(trace_id=row["id"], recorded_at=row["recorded_at"].isoformat())
        if row["supersedes"] is not None:
            earlier = await superseded_traces(conn, row["id"])
            newer_keys = [row["decision_key"], *(e["decision_key"] for e in earlier)]
            document["supersedes"] = [_earlier(e, newer_key) for e, newer_key in zip(earlier, newer_keys, strict=False)]
        _print(document, fmt)
        return 0

    app.run(body)


def _print(document: dict[str, object], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(yaml.dump(document, Dumper=_ReadableDumper, sort_keys=False, allow_unicode=True), nl=False)


async def _policy_change(conn: asyncpg.Connection, change_id: str, fmt: str) -> int:
    """A policy change's decision, printed as a case's trace is: who decided, how, on which brief."""
    row = await latest_policy_change(conn, change_id)
    if row is None:
        raise CaseNotFound(f"no decision recorded for {change_id} (not decided yet: see `hitl policy review {change_id}`)")
    document = json.loads(row["record"])
    document.update(trace_id=f"policy_changes/{row['id']}", recorded_at=row["recorded_at"].isoformat())
    _print(document, fmt)
    return 0


def _earlier(row: asyncpg.Record, newer_key: str) -> dict[str, object]:
    """An earlier trace of the case, as `hitl trace` lists it under `supersedes`: superseded by the next
    newer trace after a reset (the same decision key) or a re-run of the case ID (another key)."""
    return {
        "trace_id": row["id"],
        "superseded_after": "reset" if row["decision_key"] == newer_key else "re-run",
        "run_id": row["run_id"],
        "outcome": row["outcome"],
        "decided_by": row["decided_by"],
        "decided_via": row["decided_via"],
        "recorded_at": row["recorded_at"].isoformat(),
    }


class _ReadableDumper(yaml.SafeDumper):
    """Multi-line strings (the brief) as literal blocks, so the trace reads like the brief did."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ReadableDumper.add_representer(str, _represent_str)
