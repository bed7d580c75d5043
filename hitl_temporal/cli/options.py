"""Option types the commands share."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from gates.durations import parse_duration


class DurationType(click.ParamType):
    """`90s`, `15m`, `4h`, `7d`, `2w`, `1h30m` as a timedelta (gates.durations.parse_duration)."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


DURATION = DurationType()
