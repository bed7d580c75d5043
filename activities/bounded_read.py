"""Reading an HTTP answer from another system without trusting its size.

A connector or the agent may answer with a body of any size, compressed or not, with a
Content-Length that lies or none at all. `read_at_most` stops at the limit (counted after
decompression) and never reads the rest, so one runaway answer cannot fill the worker's memory.
"""

from __future__ import annotations

import httpx


class BodyTooLarge(Exception):
    """The body is longer than the limit; what was read is dropped."""


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
