"""Text from people and other systems: what may be stored, and how it is shown safely.

Every job on such text, in one place:

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
- **In Markdown** (`md_inline`, `md_block`): the brief and the UI's details panels are Markdown, so
  text from requesters, reviewers and connectors goes in a code span or a fenced code block,
  which CommonMark and GFM show literally: no heading, emphasis, link or autolink can form in it,
  so nobody's words can pass for the system's.
- **On a terminal** (`terminal_text`, `quoted`): hidden characters shown as marks, and people's
  words in “ ” so they stand apart from the labels `hitl show` prints.
"""

from __future__ import annotations

import re
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


def one_visible_line_problem(text: str) -> str | None:
    """Why `text` is not one line of visible text (a setting, a policy title), or None."""
    for index, char in enumerate(text):
        if neutralize(char, keep_newlines=False) != char:
            return f"contains the hidden or control character {mark(char)} at position {index + 1}"
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


# -- display: Markdown and terminals -----------------------------------------------------------

_BACKTICKS = re.compile(r"`+")
_QUOTES = frozenset("\u201c\u201d")


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def _clip(text: str, max_chars: int | None) -> tuple[str, str]:
    """`text` cut to `max_chars` characters with "…", and the note saying how much was cut ("" if nothing)."""
    if max_chars is None or len(text) <= max_chars:
        return text, ""
    return text[:max_chars] + "…", f" ({len(text) - max_chars:,} more characters not shown)"


def _flat(text: str) -> str:
    """One line: line breaks become spaces (a lone CR is left for `neutralize` to mark)."""
    return text.replace("\r\n", "\n").replace("\n", " ")


def md_inline(text: str, *, max_chars: int | None = None) -> str:
    """`text` as a Markdown code span, for untrusted text inside a line the system writes.

    The fence is longer than any backtick run inside, so the text cannot close it; padding keeps
    CommonMark from eating a leading or trailing space or backtick. Hidden characters are marked;
    text over `max_chars` is cut with "…" and a note outside the span says how much."""
    shown, note = _clip(_flat(text), max_chars)
    body = neutralize(shown) or " "  # an empty span (two backticks) would read as literal backticks
    fence = "`" * (_longest_backtick_run(body) + 1)
    pad = " " if body.strip(" ") and (body[0] in "` " or body[-1] in "` ") else ""
    return f"{fence}{pad}{body}{pad}{fence}{note}"


def md_block(text: str) -> str:
    """`text` as a fenced Markdown code block (```` ```text ````), for untrusted text of several lines.

    No line inside can close the fence (it is longer than any backtick run in the text);
    newlines and tabs are kept, hidden characters marked. Put it at the start of a line, after a blank one."""
    body = neutralize(text.replace("\r\n", "\n"))
    fence = "`" * max(3, _longest_backtick_run(body) + 1)
    if not body.endswith("\n"):
        body += "\n"
    return f"{fence}text\n{body}{fence}"


def terminal_text(text: str, *, one_line: bool = False) -> str:
    """`text` safe to print on a terminal or into a pipe: no escape sequence, CR or bidi override
    reaches it raw. `one_line` also marks newlines and tabs, for a table cell or a label's value."""
    return neutralize(text.replace("\r\n", "\n"), keep_newlines=not one_line)


def quoted(text: str) -> str:
    """Someone's words on one line, in “ ”, for plain-text output beside the system's labels.

    Curly quotes inside are marked too, so the text cannot close the quote early and go on
    in what would look like the system's voice."""
    body = terminal_text(text, one_line=True)
    return "\u201c" + "".join(mark(c) if c in _QUOTES else c for c in body) + "\u201d"
