"""The one place a Temporal client is built: worker, CLI, tests and replayer share its converter and interceptors."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from workers.config import Resolved, Settings, resolve_temporal

CONNECT_TIMEOUT_SECONDS = 10.0

# Every client and worker uses the pydantic converter: payloads are pydantic v2 models,
# and JSON typed into the UI or `temporal workflow signal` is validated into them.
DATA_CONVERTER = pydantic_data_converter


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached with the resolved configuration."""


def client_interceptors() -> list:
    """OpenTelemetry tracing for client calls, workflows and activities (workers inherit client interceptors)."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


async def connect_client(settings: Settings, *, resolved: Resolved | None = None) -> Client:
    resolved = resolved or resolve_temporal(settings)
    kwargs = dict(resolved.value)
    target = kwargs.pop("target_host")
    try:
        return await asyncio.wait_for(
            Client.connect(target, **kwargs, data_converter=DATA_CONVERTER, interceptors=client_interceptors()),
            timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except (RuntimeError, asyncio.TimeoutError, OSError) as err:
        detail = str(err) or type(err).__name__
        raise TemporalUnavailable(f"cannot reach Temporal at {target} (from {resolved.source}): {detail}") from err
