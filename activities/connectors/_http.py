"""The HTTP connector: asks a source's service for items over a small JSON contract.

    GET {base_url}/{source}?<key fields>&items=enterprise_arr,tier
    200 {"items": {"enterprise_arr": 1200000, "tier": "enterprise"}, "ref": "https://crm/acme"}

Timeouts (of the whole exchange, body included), connection failures, HTTP 5xx and 429 raise
`TransientSourceError` (Temporal retries the activity). A 404 means the key names nothing there;
any other 4xx, or an answer we cannot take, becomes `MissingContext` for a human:

- a body over MAX_ANSWER_BYTES (read no further than that, whatever Content-Length says);
- a body that is not strict JSON (not UTF-8, duplicate keys, NaN, nesting deeper than 32:
  `gates.json_input.loads_strict`) or not of the envelope's shape;
- a `ref` that is neither a plain http(s) URL nor a record id (`crm:acme_enterprise`) of at most
  MAX_REF_CHARS: the reviewer is sent there to check the facts, so a `javascript:` link or a
  hidden character in it discredits the whole answer;
- per item (`build_result`): a value of the wrong type, or whose JSON is over 8 KiB.

Items the answer leaves out are "not returned by <source>".
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from activities.bounded_read import BodyTooLarge, read_at_most
from activities.connectors._items import (
    SCHEMAS,
    all_missing,
    build_result,
    format_validation_error,
    one_line_reason,
    request_problem,
    wanted_items,
)
from activities.connectors._port import TransientSourceError
from gates.evidence import SOURCES, ConnectorResult, SourceRequest
from gates.json_input import JsonInputError, loads_strict
from gates.text import neutralize

_BODY_EXCERPT = 200
# A source's answer for one case is a few KB; a bigger body is a wrong endpoint or a flood.
MAX_ANSWER_BYTES = 256 * 1024
# Of an error body (4xx, 5xx), only what an excerpt needs is read.
_ERROR_BODY_BYTES = 4 * 1024
MAX_REF_CHARS = 2048


class _Answer(BaseModel):
    """The envelope every source service answers with."""

    model_config = ConfigDict(strict=True)
    items: dict[str, Any]
    ref: str | None = None


def _excerpt(body: bytes) -> str:
    """The start of a body for an error message: one line, hidden characters marked."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    text = neutralize(text, keep_newlines=False)
    return text[:_BODY_EXCERPT] + ("…" if len(text) > _BODY_EXCERPT else "")


async def _read_excerpt(response: httpx.Response) -> str:
    try:
        return _excerpt(await read_at_most(response, _ERROR_BODY_BYTES))
    except BodyTooLarge:
        return f"(a body over {_ERROR_BODY_BYTES // 1024} KiB, not shown)"


# `<source>:<record id>`: where a human finds the record in that system, not a link.
_RECORD_ID = re.compile(r"^[a-z_]+:[A-Za-z0-9_.@/#-]+$")


def ref_problem(ref: str) -> str | None:
    """Why `ref` cannot be shown to a reviewer as where to check the facts, or None."""
    if len(ref) > MAX_REF_CHARS:
        return f"ref is {len(ref)} characters; at most {MAX_REF_CHARS}"
    if neutralize(ref, keep_newlines=False) != ref or any(c.isspace() for c in ref):
        return "ref contains spaces or hidden characters"
    if _RECORD_ID.match(ref) and ref.split(":", 1)[0] in SOURCES:
        return None  # a record id such as `crm:acme_enterprise`, as the demo world's connector gives
    try:
        parts = urlsplit(ref)
    except ValueError:
        return "ref is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"ref {ref[:80]!r} is neither an http(s) URL nor a record id such as crm:acme_enterprise"
    if parts.username is not None or parts.password is not None:
        return "ref has credentials in it"
    return None


class HttpConnector:
    """One source behind `base_url` (e.g. `http://crm.internal/api`, asked at `/crm`)."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def url_for(self, source: str) -> str:
        return f"{self.base_url}/{source}"

    async def fetch(self, request: SourceRequest) -> ConnectorResult:
        source = request.source
        problem = request_problem(request)
        if problem:
            return all_missing(request, problem)
        schema = SCHEMAS[source]
        # Ask only for items the contract knows; the rest are "unknown item" without a round trip.
        askable = [item for item in wanted_items(request) if schema.adapter_for(request, item) is not None]
        if not askable:
            return build_result(request, {}, ref=None)
        url = self.url_for(source)
        params = {**request.key, "items": ",".join(askable)}
        try:
            # httpx's timeout applies per phase (a source dripping its body never trips it):
            # asyncio.timeout bounds the whole exchange.
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(timeout=self.timeout) as client,
                client.stream("GET", url, params=params, headers={"Accept": "application/json"}) as response,
            ):
                status = response.status_code
                if status >= 500 or status == 429:
                    raise TransientSourceError(
                        source, f"{source} unavailable: HTTP {status} from {url}: {await _read_excerpt(response)}"
                    )
                if status == 404:
                    return all_missing(request, f"not found in {source} (HTTP 404)")
                if not response.is_success:
                    return all_missing(
                        request, f"{source} refused the request: HTTP {status}: {await _read_excerpt(response)}"
                    )
                try:
                    body = await read_at_most(response, MAX_ANSWER_BYTES)
                except BodyTooLarge:
                    return all_missing(
                        request, f"answer too large: {source} sent more than {MAX_ANSWER_BYTES // 1024} KiB"
                    )
                answered_url = str(response.url)
        except httpx.UnsupportedProtocol as err:
            return all_missing(request, f"cannot ask {source} at {url}: {err}")
        except (TimeoutError, httpx.TimeoutException) as err:
            raise TransientSourceError(
                source, f"{source} did not answer within {self.timeout:g}s ({url}): {type(err).__name__}"
            ) from err
        except httpx.TransportError as err:
            raise TransientSourceError(
                source, one_line_reason(f"cannot reach {source} at {url}: {type(err).__name__}: {err}")
            ) from err
        return self._result(request, body, answered_url)

    def _result(self, request: SourceRequest, body: bytes, answered_url: str) -> ConnectorResult:
        source = request.source
        try:
            document = loads_strict(body, what="body")
        except JsonInputError as err:
            detail = f"not JSON: {_excerpt(body)}" if str(err).startswith("body is not valid JSON") else str(err)
            return all_missing(request, f"malformed answer from {source}: {detail}")
        try:
            answer = _Answer.model_validate(document)
        except ValidationError as err:
            shape = '{"items": {...}, "ref": ...}'
            return all_missing(request, f"malformed answer from {source}: expected {shape}: {format_validation_error(err)}")
        if answer.ref is not None:
            problem = ref_problem(answer.ref)
            if problem:
                return all_missing(request, f"malformed answer from {source}: {problem}")
        return build_result(request, answer.items, ref=answer.ref or answered_url)
