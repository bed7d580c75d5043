"""Hardened YAML for the files people deploy (policies, the reviewer directory): one loader, one set of refusals.

PyYAML's safe loader still accepts what these files never need and an attacker or a slip could use:
aliases (a "billion laughs" file expands to gigabytes), merge keys and repeated keys (PyYAML keeps
the last value silently), nesting deep enough to exhaust its recursive composer, and files of any
size. `parse_yaml` refuses those with one line naming the line, and returns the composed node
too, so a caller can point a validation error at the line it came from (`line_of`).
Pure: it parses bytes a caller has read (gates does no I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from gates.text import neutralize

# Deeper than any of our files needs; keeps PyYAML's recursive composer off Python's recursion limit.
MAX_DEPTH = 32


@dataclass(frozen=True)
class YamlFileKind:
    """What a kind of file is called in messages (`policy` -> "policy files"), its size cap and why."""

    name: str
    max_bytes: int
    size_note: str  # after "larger than N KiB; ", e.g. "a policy file is a few KB"


class YamlInputError(ValueError):
    """A file that is not acceptable YAML; the message is one line (`line N: ...` where known)."""


class YamlRefused(Exception):
    """What the hardened loader refuses although YAML allows it; the message starts with `line N`."""


class HardenedLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, merge keys, repeated keys and deep nesting."""

    def __init__(self, stream: str, kind: str):
        super().__init__(stream)
        self._depth = 0
        self._kind = kind

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlRefused(
                f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed in {self._kind} files;"
                " write the value out"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlRefused(f"line {mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlRefused(f"line {line}: YAML merge keys (<<) are not allowed in {self._kind} files")
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_line.get(key)
                except TypeError:  # unhashable: the constructor reports it
                    continue
                if earlier is not None:
                    shown = neutralize(str(key), keep_newlines=False)[:80]
                    raise YamlRefused(f"line {line}: duplicate key {shown!r} (first at line {earlier}); each key may appear once")
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def file_text(data: bytes, kind: YamlFileKind) -> str:
    """The file's bytes as text: at most `kind.max_bytes`, UTF-8 (a leading byte-order mark is fine)."""
    if len(data) > kind.max_bytes:
        raise YamlRefused(f"larger than {kind.max_bytes // 1024} KiB; {kind.size_note}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise YamlRefused(f"line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})") from None


def yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """PyYAML's multi-line message (with a snippet and a caret) as `line N column M: problem`."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        what = ", ".join(part for part in (err.context, err.problem) if part)
        return f"line {mark.line + 1} column {mark.column + 1}: {what}"
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. a raw ESC
        before = text[: err.position]
        line, column = before.count("\n") + 1, err.position - (before.rfind("\n") + 1) + 1
        return f"line {line} column {column}: unacceptable character #x{err.character:04x}: {err.reason}"
    return str(err)


@dataclass(frozen=True)
class YamlDocument:
    value: Any
    node: yaml.Node | None  # None for an empty file


def parse_yaml(data: bytes, kind: YamlFileKind) -> YamlDocument:
    """One YAML document from `data`, hardened as above; any problem is one YamlInputError line."""
    text = ""
    try:
        text = file_text(data, kind)
        loader = HardenedLoader(text, kind.name)
        try:
            node = loader.get_single_node()
            value = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except YamlRefused as err:
        raise YamlInputError(neutralize(str(err), keep_newlines=False)) from err
    except yaml.YAMLError as err:
        raise YamlInputError(neutralize(yaml_problem(err, text), keep_newlines=False)) from err
    except (ValueError, RecursionError) as err:  # e.g. an integer of more digits than Python converts
        raise YamlInputError(neutralize(str(err), keep_newlines=False)) from err
    return YamlDocument(value, node)


def line_of(node: yaml.Node | None, loc: Sequence[int | str], *, key: bool = False) -> int | None:
    """The line (1-based) of the value at `loc` (a pydantic error location) in the composed document,
    or of the deepest part of `loc` that exists (a missing field points at its parent). `key`: the
    line of the last key itself (an unknown key)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for index, step in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(step)), None)
            if found is None:
                return line
            key_node, node = found
            line = (key_node if key and index == len(loc) - 1 else node).start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line
