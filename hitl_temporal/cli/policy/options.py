"""Options the `hitl policy` commands share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from gates.durations import parse_duration

# How outcomes read in a sentence: "rejected by fin_rev_ben".
PAST = {"approve": "approved", "reject": "rejected", "request_info": "sent back for information"}


class SinceType(click.ParamType):
    """A window back from now (`30d`, `2w`: gates.durations) or a date or time (`2026-11-01`,
    `2026-11-01T09:00Z`; UTC when no zone is given), as the datetime it starts at."""

    name = "DURATION|DATE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            return datetime.now(UTC) - parse_duration(text)
        except ValueError:
            pass
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither a duration (30d, 2w) nor a date (2026-11-01)", param, ctx)
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


SINCE = SinceType()
