"""Evidence gathering: one activity per source (`gather_crm`, `gather_chat`, ...).

Each source is served by an HTTP connector when `HITL_CONNECTOR_URLS` names it, else by the
local connector over the demo world. The activities only read, so a retry is always safe.
A transient failure becomes a retryable `ApplicationError` of type `TransientSourceError`;
anything permanent comes back as `MissingContext` in the result, never as an exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.connectors import Connector, HttpConnector, LocalConnector, TransientSourceError
from activities.connectors._items import all_missing
from gates.evidence import SOURCES, ConnectorResult, SourceRequest
from gates.messages import SourceAttempt

TRANSIENT_ERROR_TYPE = "TransientSourceError"


class ConnectorSettings(Protocol):
    """The part of `workers.config.Settings` this module reads (activities do not import workers)."""

    @property
    def connector_urls(self) -> Mapping[str, str]: ...

    @property
    def connector_timeout_seconds(self) -> float: ...


def build_connectors(pool: asyncpg.Pool, settings: ConnectorSettings) -> dict[str, Connector]:
    """The connector of every source: HTTP where configured, else the demo world."""
    local = LocalConnector(pool)
    connectors: dict[str, Connector] = {}
    for source in SOURCES:
        url = settings.connector_urls.get(source)
        connectors[source] = HttpConnector(url, settings.connector_timeout_seconds) if url else local
    return connectors


class GatherActivities:
    def __init__(self, pool: asyncpg.Pool, settings: ConnectorSettings):
        self.connectors = build_connectors(pool, settings)

    async def attempt(self, request: SourceRequest, *, within: float) -> SourceAttempt:
        """One quick attempt at a source, never raising: its answer, or why the case must ask it again
        as its own activity (slow, failing or unknown). For a case's opening read (activities/openings.py)."""
        if request.source not in self.connectors:
            return SourceAttempt(source=request.source, error=f"no source {request.source!r}")
        try:
            result = await asyncio.wait_for(self._gather(request.source, request), within)
        except TimeoutError:
            return SourceAttempt(source=request.source, error=f"{request.source} did not answer within {within:g}s")
        except Exception as err:  # any failure: the regular activity asks again, with its retries
            return SourceAttempt(source=request.source, error=f"{type(err).__name__}: {err}")
        return SourceAttempt(source=request.source, result=result)

    async def _gather(self, source: str, request: SourceRequest) -> ConnectorResult:
        if request.source != source:
            return all_missing(request, f"a request for {request.source} was sent to gather_{source}")
        try:
            return await self.connectors[source].fetch(request)
        except TransientSourceError as err:
            raise ApplicationError(str(err), source, type=TRANSIENT_ERROR_TYPE, non_retryable=False) from err

    @activity.defn(name="gather_crm")
    async def gather_crm(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("crm", request)

    @activity.defn(name="gather_chat")
    async def gather_chat(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("chat", request)

    @activity.defn(name="gather_vendor_master")
    async def gather_vendor_master(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("vendor_master", request)

    @activity.defn(name="gather_finance")
    async def gather_finance(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("finance", request)

    @activity.defn(name="gather_procurement")
    async def gather_procurement(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("procurement", request)

    @activity.defn(name="gather_iam")
    async def gather_iam(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("iam", request)

    def activities(self) -> list:
        """The six bound activity methods, one per source, for the worker."""
        return [
            self.gather_crm,
            self.gather_chat,
            self.gather_vendor_master,
            self.gather_finance,
            self.gather_procurement,
            self.gather_iam,
        ]
