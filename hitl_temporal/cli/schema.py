"""`hitl schema [KIND]`: the JSON Schemas of what a service sends."""

from __future__ import annotations

import json
from typing import Any

import click

from gates.cases import KIND_ALIASES, REQUEST_MODELS
from gates.gate import Decision, OperatorAction
from hitl_temporal.cli.application import Application, pass_app


def schemas(kind: str | None = None) -> dict[str, Any]:
    """JSON Schemas of the case payloads (all kinds, or one), the decision, and (for all kinds) the operator action."""
    kinds = [KIND_ALIASES[kind.lower()]] if kind else list(REQUEST_MODELS)
    document: dict[str, Any] = {
        "cases": {k.value: REQUEST_MODELS[k].model_json_schema() for k in kinds},
        "decision": Decision.model_json_schema(),
    }
    if kind is None:
        document["operator_action"] = OperatorAction.model_json_schema()
    return document


@click.command()
@click.argument("kind", required=False, metavar="[KIND]")
@pass_app
def schema(app: Application, kind: str | None) -> None:
    """JSON Schemas: {"cases": {...}, "decision": ..., "operator_action": ...}; with KIND, that case and the decision."""
    if kind is not None and kind.strip().lower() not in KIND_ALIASES:
        app.fail(f"unknown kind {kind!r}; one of {', '.join(sorted(KIND_ALIASES))}")
    click.echo(json.dumps(schemas(kind and kind.strip()), indent=2))
