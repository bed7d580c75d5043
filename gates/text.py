"""Text from people and other systems: what may be stored, and how it is shown safely.

Three jobs, one home:

- **At the door** (`person_text_problem`): a reason, a justification or a question must be text a
  reader can see and PostgreSQL can store: no NUL or other control characters (tab and newline
  are fine), no unpaired surrogates, and at least one visible character (a lone zero-width space
  is not a reason).
- **In storage** (`storable`): the recorder makes any value storable whatever reached it
  (connector answers, payload previews), so recording a decision can never fail on content.
- **On display** (`neutralize`): characters that render as nothing or change how the text
  around them reads (controls, bidirectional overrides, zero-width and other format characters,
  line separators) are shown as visible `⟨U+202E⟩` marks, so no sender can hide text, reorder
  it ("evorppa" reading as "approve"), or send escape sequences to a terminal.
"""

from __future__ import annotations

import unicodedata
from typing import Any

# Characters that draw nothing (or nearly nothing) in common fonts but are not format characters.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e")
# Kept as they are on display: they lay text out and cannot move or hide it.
_LAYOUT = frozenset("\n\t")


def _hidden(char: str) -> bool:
    """Does this character render as nothing, or control how other characters render?"""
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn") or char in _FILLERS


def mark(char: str) -> str:
    """The visible stand-in for a hidden character: `⟨U+202E⟩`."""
    return f"⟨U+{ord(char):04X}⟩"


def neutralize(text: str, *, keep_newlines: bool = True) -> str:
    """`text` with every hidden character shown as a `⟨U+XXXX⟩` mark (newlines and tabs kept,
    unless `keep_newlines` is False, for one-line fields)."""
    keep = _LAYOUT if keep_newlines else frozenset()
    if text.isprintable() and not any(c in _FILLERS for c in text):
        return text  # the common case: nothing to replace (isprintable is False for \n and \t)
    return "".join(c if c in keep or not _hidden(c) else mark(c) for c in text)


def has_visible_character(text: str) -> bool:
    return any(not _hidden(c) and not c.isspace() and unicodedata.category(c) not in ("Mn", "Me") for c in text)


def person_text_problem(text: str) -> str | None:
    """Why `text` cannot be taken as a person's words, or None. One line, for the sender."""
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cs":
            return f"contains an unpaired surrogate {mark(char)} at position {index + 1}, which cannot be stored"
        if category == "Cc" and char not in "\t\n\r":
            return f"contains the control character {mark(char)} at position {index + 1}"
    if not has_visible_character(text):
        return "has no visible characters"
    return None


_REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    """`text` with what PostgreSQL's text and jsonb cannot hold (NUL, unpaired surrogates) replaced by U+FFFD."""
    if "\x00" not in text and text.isascii():
        return text
    return "".join(_REPLACEMENT if c == "\x00" or unicodedata.category(c) == "Cs" else c for c in text)


def storable(value: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, numbers) in which every string, keys
    included, is storable."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value
