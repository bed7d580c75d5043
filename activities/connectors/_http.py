"""The HTTP connector: asks a source's service for items over a small JSON contract.

    GET {base_url}/{source}?<key fields>&items=enterprise_arr,tier
    200 {"items": {"enterprise_arr": 1200000, "tier": "enterprise"}, "ref": "https://crm/acme"}

Timeouts, connection failures, HTTP 5xx and 429 raise `TransientSourceError` (Temporal retries
the activity). A 404 means the key names nothing there; any other 4xx, a body that is not JSON
or not of that shape, or an item of the wrong type becomes `MissingContext` for the affected
items only. Items the answer leaves out are "not returned by <source>".
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from activities.connectors._items import (
    SCHEMAS,
    all_missing,
    build_result,
    format_validation_error,
    request_problem,
    wanted_items,
)
from activities.connectors._port import TransientSourceError
from gates.evidence import ConnectorResult, SourceRequest

_BODY_EXCERPT = 200


class _Answer(BaseModel):
    """The envelope every source service answers with."""

    model_config = ConfigDict(strict=True)
    items: dict[str, Any]
    ref: str | None = None


def _excerpt(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:_BODY_EXCERPT] + ("…" if len(text) > _BODY_EXCERPT else "")


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
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(url, params=params, headers={"Accept": "application/json"})
        except httpx.UnsupportedProtocol as err:
            return all_missing(request, f"cannot ask {source} at {url}: {err}")
        except httpx.TimeoutException as err:
            raise TransientSourceError(
                source, f"{source} did not answer within {self.timeout:g}s ({url}): {type(err).__name__}"
            ) from err
        except httpx.TransportError as err:
            raise TransientSourceError(source, f"cannot reach {source} at {url}: {type(err).__name__}: {err}") from err

        status = response.status_code
        if status >= 500 or status == 429:
            raise TransientSourceError(source, f"{source} unavailable: HTTP {status} from {url}: {_excerpt(response)}")
        if status == 404:
            return all_missing(request, f"not found in {source} (HTTP 404)")
        if not response.is_success:
            return all_missing(request, f"{source} refused the request: HTTP {status}: {_excerpt(response)}")
        try:
            body = response.json()
        except ValueError:
            return all_missing(request, f"malformed answer from {source}: not JSON: {_excerpt(response)}")
        try:
            answer = _Answer.model_validate(body)
        except ValidationError as err:
            shape = '{"items": {...}, "ref": ...}'
            return all_missing(
                request, f"malformed answer from {source}: expected {shape}: {format_validation_error(err)}"
            )
        return build_result(request, answer.items, ref=answer.ref or str(response.url))
