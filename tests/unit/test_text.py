"""The text-safety layer's display side: people's words as Markdown code and as quoted terminal text.

Markdown is checked with a real CommonMark renderer (markdown-it-py), once plain and once with
GFM-like autolinks: what a reviewer sees must be the sender's text, literally, and nothing the
text could turn into a heading, emphasis or a link.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from gates.text import md_block, md_inline, neutralize, quoted, terminal_text
from tests.unit.untrusted import (
    RENDERERS,
    TEXT,
    hidden_characters,
    shown_inline,
    structure,
    tokens,
)

# --- md_inline --------------------------------------------------------------------------------


def test_markdown_in_a_code_span_stays_literal():
    for md in RENDERERS:
        html = md.render(f"said: {md_inline('**approve** by cfo_jane [click](https://evil.example)')}")
        assert html == "<p>said: <code>**approve** by cfo_jane [click](https://evil.example)</code></p>\n"


def test_backticks_in_the_text_cannot_close_the_span():
    span = md_inline("`a` b `` c")
    assert span == "``` `a` b `` c ```"
    assert MarkdownIt("commonmark").render(span) == "<p><code>`a` b `` c</code></p>\n"


def test_a_leading_or_trailing_space_is_kept():
    assert MarkdownIt("commonmark").parseInline(md_inline(" x "))[0].children[0].content == " x "


def test_newlines_become_spaces_so_the_text_cannot_start_a_line():
    assert md_inline("ok\n# Decided\r\nby eve") == "`ok # Decided by eve`"


def test_an_rtl_override_is_shown_as_a_mark():
    assert md_inline("\u202eevorppa") == "`⟨U+202E⟩evorppa`"


def test_long_text_is_cut_with_a_note_of_how_much():
    assert md_inline("x" * 250, max_chars=200) == "`" + "x" * 200 + "…` (50 more characters not shown)"


def test_short_text_is_not_cut():
    assert md_inline("x" * 200, max_chars=200) == "`" + "x" * 200 + "`"


def test_empty_text_is_still_a_code_span():
    """Two backticks alone would read as literal backticks, not as an empty quote."""
    assert MarkdownIt("commonmark").render(md_inline("")) == "<p><code> </code></p>\n"


@settings(max_examples=300, deadline=None)
@given(text=TEXT, max_chars=st.one_of(st.none(), st.integers(1, 40)))
def test_any_text_is_one_code_span_showing_exactly_the_neutralized_text(text, max_chars):
    source = f"reason: {md_inline(text, max_chars=max_chars)}"
    for md in RENDERERS:
        found = tokens(source, md)
        assert structure(source, md) == ["paragraph_open", "inline", "code_inline", "paragraph_close"]
        assert [t.content for t in found if t.type == "code_inline"] == [shown_inline(text, max_chars)]
        assert hidden_characters(md.render(source), allowed="\n\t") == []


# --- md_block ---------------------------------------------------------------------------------


def test_a_block_keeps_lines_and_shows_headings_literally():
    block = md_block("line one\n# Decided\n**approve**")
    assert block == "```text\nline one\n# Decided\n**approve**\n```"
    assert MarkdownIt("commonmark").render(block) == (
        '<pre><code class="language-text">line one\n# Decided\n**approve**\n</code></pre>\n'
    )


def test_a_fence_inside_the_text_cannot_close_the_block():
    block = md_block("before\n```\n# Decided\n````")
    assert block.startswith("`````text\n") and block.endswith("\n`````")
    assert structure(block, MarkdownIt("commonmark")) == ["fence"]


def test_windows_line_endings_are_kept_as_lines_and_a_lone_cr_is_marked():
    assert md_block("a\r\nb\rc") == "```text\na\nb⟨U+000D⟩c\n```"


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_any_text_is_one_fenced_block_showing_exactly_the_neutralized_text(text):
    source = f"In their words:\n\n{md_block(text)}\n\nSystem line."
    expected = neutralize(text.replace("\r\n", "\n"))
    for md in RENDERERS:
        assert structure(source, md) == [
            "paragraph_open",
            "inline",
            "paragraph_close",
            "fence",
            "paragraph_open",
            "inline",
            "paragraph_close",
        ]
        (fence,) = [t for t in tokens(source, md) if t.type == "fence"]
        assert fence.info == "text"
        assert fence.content == (expected if expected.endswith("\n") else expected + "\n")
        assert hidden_characters(md.render(source), allowed="\n\t") == []


# --- terminal ---------------------------------------------------------------------------------


def test_escape_sequences_reach_the_terminal_as_marks():
    assert terminal_text("\x1b[2Jok\x1b]8;;https://evil.example\x07x") == "⟨U+001B⟩[2Jok⟨U+001B⟩]8;;https://evil.example⟨U+0007⟩x"


def test_terminal_text_keeps_lines_unless_one_line():
    assert terminal_text("a\r\nb") == "a\nb"
    assert terminal_text("a\nb", one_line=True) == "a⟨U+000A⟩b"


def test_quoted_words_cannot_close_their_quote_early():
    assert quoted("fine” decided: approve by cfo_jane") == "“fine⟨U+201D⟩ decided: approve by cfo_jane”"


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_quoted_text_is_one_line_with_nothing_hidden(text):
    shown = quoted(text)
    assert shown.startswith("“") and shown.endswith("”")
    assert "“" not in shown[1:-1] and "”" not in shown[1:-1]
    assert hidden_characters(shown, allowed="") == []
