"""Fit a record under a size limit, saying what was cut.

Temporal refuses a payload over its blob limit, and the workflow cannot shrink what the server
refuses: a decision trace or a carried-over case state that grew too large would fail the case
with nothing recorded. Each channel is bounded (gates/bounds.py), but the bounds together can
still add up past the limit in the worst case, so everything the workflow writes goes through
`fit_json` last: the longest free texts are shortened first (each keeps its start and says how
much was cut), then, if that is not enough, the middle of the longest droppable list goes. The
notes returned name every cut, for the record itself.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

# Texts are never cut below this many characters; what they say first is kept.
MIN_KEPT_CHARS = 200
MAX_NOTES = 20

Path = tuple[str | int, ...]


def json_size(value: Any) -> int:
    """Bytes of compact UTF-8 JSON, as the payload converter writes it."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "replace"))


def _walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, path + (index,))


def _show(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path)) or "(root)"


def _set(root: Any, path: Path, value: Any) -> None:
    target = root
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def _protected(path: Path, protect: tuple[str, ...]) -> bool:
    return bool(path) and path[0] in protect


def _first_shortening_cut(texts: list[tuple[int, Path, str]], excess: int) -> tuple[Path, int, int, str] | None:
    """The cut of the longest text (the first in document order) that makes it shorter.

    A text just over MIN_KEPT_CHARS, or one already cut to it, would come back as long as it was
    once the cut's marker is appended; cutting it again would loop for ever, so it is passed over."""
    for length, path, text in sorted(texts, key=lambda t: -t[0]):
        keep = max(MIN_KEPT_CHARS, min(length // 2, length - excess - 80))
        shortened = f"{text[:keep]}… [{length - keep:,} characters cut to fit the record]"
        if len(shortened) < length:
            return path, length, keep, shortened
    return None


def fit_json(
    value: Any, budget_bytes: int, *, protect: tuple[str, ...] = (), droppable: tuple[str, ...] = ()
) -> tuple[Any, list[str]]:
    """A copy of `value` whose JSON is at most `budget_bytes`, and notes naming each cut.

    Top-level keys in `protect` are never changed. Lists named (by their key) in `droppable` may
    lose middle entries once no text is left to shorten. Deterministic: the same input gives the
    same output (workflow code relies on it)."""
    size = json_size(value)
    if size <= budget_bytes:
        return value, []
    fitted = copy.deepcopy(value)
    notes: list[str] = []
    while size > budget_bytes:
        texts = [
            (len(v), p, v)
            for p, v in _walk(fitted)
            if isinstance(v, str) and len(v) > MIN_KEPT_CHARS and not _protected(p, protect)
        ]
        cut = _first_shortening_cut(texts, size - budget_bytes)
        if cut is not None:
            path, length, keep, shortened = cut
            _set(fitted, path, shortened)
            notes.append(f"{_show(path)}: cut from {length:,} to {keep:,} characters")
        else:
            lists = [
                (len(v), p, v)
                for p, v in _walk(fitted)
                if isinstance(v, list) and len(v) > 2 and p and p[-1] in droppable and not _protected(p, protect)
            ]
            if not lists:
                notes.append(f"still {size:,} bytes, over the {budget_bytes:,} budget: nothing left to cut")
                break
            count, path, items = max(lists, key=lambda t: t[0])
            kept = items[: count // 4] + items[-(count // 4 or 1):]
            _set(fitted, path, kept)
            notes.append(f"{_show(path)}: kept {len(kept)} of {count} entries (the first and the latest)")
        size = json_size(fitted)
    if len(notes) > MAX_NOTES:
        notes = notes[: MAX_NOTES - 1] + [f"and {len(notes) - MAX_NOTES + 1} more cuts"]
    return fitted, notes
