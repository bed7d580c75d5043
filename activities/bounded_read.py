"""Reading what another system or a person hands us without trusting its size: an HTTP answer, a file.

A connector or the agent may answer with a body of any size, compressed or not, with a
Content-Length that lies or none at all. `read_at_most` stops at the limit (counted after
decompression) and never reads the rest, so one runaway answer cannot fill the worker's memory.
A file named on the command line or in the configuration may be anything (`/dev/zero`, a FIFO, a
log, a directory): `read_file_at_most` reads at most one byte past its limit and says in one line
what is wrong. Callers wrap `FileUnreadable` in their own error type.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from gates.text import neutralize


class BodyTooLarge(Exception):
    """The body is longer than the limit; what was read is dropped."""


class FileUnreadable(Exception):
    """A file that cannot be read within its limit; one line naming it (neutralized) and what is wrong."""


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the (decoded) body; BodyTooLarge past that, without reading the rest."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and not response.headers.get("content-encoding"):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def shown_path(path: Path) -> str:
    """A path as a one-line message may show it: control characters marked, never sent to a terminal."""
    return neutralize(str(path), keep_newlines=False)


def size_text(limit: int) -> str:
    """`64 KiB`, `16 MiB`: a limit as the messages name it."""
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


def read_file_at_most(path: Path, limit: int, *, what: str, too_large: str | None = None) -> bytes:
    """The file's bytes, at most `limit`: reads at most one byte more, whatever the file is.

    FileUnreadable for a directory, a missing or unreadable file, or one over the limit (`too_large`,
    if given, says after the size what such a file should be; else "not a <what> file")."""
    shown = shown_path(path)
    if path.is_dir():
        raise FileUnreadable(f"{shown} is a directory, not a {what} file")
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise FileUnreadable(f"{shown}: no such file") from None
    except OSError as err:
        raise FileUnreadable(f"{shown}: cannot read: {err.strerror or type(err).__name__}") from None
    if len(data) > limit:
        should_be = f"; {too_large}" if too_large else f": not a {what} file"
        raise FileUnreadable(f"{shown} is larger than {size_text(limit)}{should_be}")
    return data
