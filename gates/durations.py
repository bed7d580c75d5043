"""Durations as people type and read them: one parser, one formatter.

Operators type `90s`, `15m`, `4h`, `7d`, `2w` or combinations such as `1h30m` (`hitl ops stuck
--older-than`, `hitl report --since`); every command and message shows a length with at most two
units. The places that show them differ only in the spacing (`2d 3h` in tables, `2d3h` inside a
sentence) and in whether the second unit must be the next smaller one, so those are the options.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhdw])")
_FRACTIONAL_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Largest first: what a formatted duration is made of (weeks are read, never written).
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def parse_duration(text: str, *, fractions: bool = False) -> timedelta:
    """'90s', '15m', '4h', '7d', '2w', or combinations such as '1h30m'; ValueError otherwise.

    Policy files (`escalate_after: 4h`, where `1.5h` is also fine: `fractions=True`) and command
    options (`--older-than 2d`, whole numbers only) both read durations here.

    Raises:
        ValueError: `text` is not made of number-unit parts; the message gives examples.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = (_FRACTIONAL_PART if fractions else _PART).findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 4h, 7d, 1h30m)")
    return timedelta(seconds=sum((float(n) if fractions else int(n)) * _UNIT_SECONDS[u] for n, u in parts))


def format_duration(
    seconds: int,
    *,
    separator: str = "",
    adjacent: bool = True,
    seconds_after_minutes: bool = True,
) -> str:
    """The largest unit of a length and at most one more: `2d3h`, `5h12m`, `40s` (negative lengths as positive).

    Args:
        seconds: The length in whole seconds (callers choose rounding or truncation).
        separator: Between the two units (`" "` gives `2d 3h`).
        adjacent: The second unit is the next smaller one (`1d` for a day and five seconds) rather
            than the next non-zero one (`1d5s`).
        seconds_after_minutes: Whether `2m5s` keeps its seconds (False: `2m`).

    Returns:
        `0s` for zero, otherwise one or two number-unit parts.
    """
    total = abs(int(seconds))
    parts: list[str] = []
    for index, (unit, size) in enumerate(_UNITS):
        count, total = divmod(total, size)
        if not parts:
            if count:
                parts.append(f"{count}{unit}")
                if unit == "m" and not seconds_after_minutes:
                    break
            continue
        if count:
            parts.append(f"{count}{unit}")
        if count or adjacent or index == len(_UNITS) - 1:
            break
    return separator.join(parts) or "0s"


def exact_duration(delta: timedelta) -> str:
    """A length in the one largest unit that states it exactly (`90m`, `2d`, `45s`), as policies spell it.

    The gate's timeout reason quotes the policy's `escalate_after` this way, so `1d1h` reads `25h`."""
    seconds = int(delta.total_seconds())
    for unit, size in _UNITS[:-1]:
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
