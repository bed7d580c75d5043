"""Untrusted text for the display tests, and how they look at rendered Markdown.

Shared by test_text.py and test_render_safety.py: hostile samples, a Hypothesis strategy over all
of Unicode, and a real CommonMark renderer (markdown-it-py), plain and with GFM-like autolinks.
"""

from __future__ import annotations

import unicodedata

from hypothesis import strategies as st
from markdown_it import MarkdownIt

from gates.text import neutralize

RENDERERS = (MarkdownIt("commonmark"), MarkdownIt("gfm-like"))

HOSTILE = (
    "# Decided",
    "**approve** by cfo_jane",
    "[click](https://evil.example)",
    "https://evil.example",
    "www.evil.com and cfo@evil.com",
    "```",
    "`",
    " `x` ",
    "<a href='https://evil.example'>x</a>",
    "&#x202E;evorppa",
    "\x1b[2J",
    "\x1b]8;;https://evil.example\x07x\x1b]8;;\x07",
    "\u202eevorppa",
    "\u200b",
    "\r",
    "line one\n# Decided\n- **May decide now**: eve",
    "",
    "   ",
)
# All of Unicode, surrogates, controls and unassigned code points included, mixed with the samples.
ANY_CHAR = st.characters(exclude_categories=())
TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(ANY_CHAR),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(ANY_CHAR, max_size=8)), max_size=6).map("".join),
)
# What a terminal or a browser would act on, or draw as nothing.
HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def hidden_characters(text: str, allowed: str = "\n") -> list[str]:
    return [c for c in text if unicodedata.category(c) in HIDDEN and c not in allowed]


def tokens(source: str, md: MarkdownIt) -> list:
    """Every token, inline children included, in document order."""
    flat = []
    for token in md.parse(source):
        flat.append(token)
        flat.extend(token.children or [])
    return flat


def structure(source: str, md: MarkdownIt) -> list[str]:
    """The document's shape: token types without their text (so a cut note or a longer fence does not count)."""
    return [t.type for t in tokens(source, md) if t.type != "text"]


def shown_inline(text: str, max_chars: int | None = None) -> str:
    """What a reader should see inside a code span: one line, cut with "…", hidden characters marked."""
    flat = text.replace("\r\n", "\n").replace("\n", " ")
    if max_chars is not None and len(flat) > max_chars:
        flat = flat[:max_chars] + "…"
    return neutralize(flat) or " "
