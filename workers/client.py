"""The one place a Temporal client is built: worker, CLI, tests and replayer share its converter and interceptors."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client
from temporalio.common import RawValue
from temporalio.contrib.pydantic import (
    PydanticJSONPlainPayloadConverter,
    PydanticPayloadConverter,
    pydantic_data_converter,
)
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    PayloadCodec,
    PayloadConverter,
)
from temporalio.exceptions import ApplicationError

from gates.gate import REFUSAL_TYPES
from hitl_temporal.codec import EncryptionCodec, KeyRing, NoKeysCodec, encrypted_converter
from workers.config import Resolved, Settings, resolve_temporal

CONNECT_TIMEOUT_SECONDS = 10.0

# Every client uses the pydantic converter: payloads are pydantic v2 models.
DATA_CONVERTER = pydantic_data_converter


# Type adapters by type hint, for every CasePayloadConverter (see its __init__); the SDK's own bound.
_SHARED_TYPE_ADAPTERS = functools.lru_cache(maxsize=1024)(TypeAdapter)


class CasePayloadConverter(PydanticPayloadConverter):
    """The pydantic converter, except that a payload decoded with no type hint stays a `RawValue`.

    The case workflows' run method and handlers take `*payloads: RawValue`: the SDK then passes
    every payload that arrived (none, one or several) with no type hints, and this converter hands
    them over undecoded, whatever their encoding. The workflow's own guard (`workflows/guard.py`)
    then decodes and judges them, so no count or encoding of input can fail a workflow task
    (an undecodable signal would otherwise be dropped, and a start with two inputs wedge the case).

    For workers and replayers only, whose clients make no calls that decode untyped results:
    everything else the worker decodes has a type (activity arguments and results, update and
    query handlers' declared types). Clients keep `DATA_CONVERTER`."""

    def __init__(self) -> None:
        super().__init__()
        # The SDK builds a payload converter for every workflow run (its command-aware data converter),
        # and each pydantic converter caches its type adapters for itself, so every run built a
        # TypeAdapter per type it decoded: 8% of the benchmark worker's CPU (BENCHMARKS.md). One cache
        # serves every instance; TypeAdapters are immutable and safe to share between threads.
        for converter in self.converters.values():
            if isinstance(converter, PydanticJSONPlainPayloadConverter):
                converter._type_adapter = _SHARED_TYPE_ADAPTERS

    def from_payloads(self, payloads: Sequence[Payload], type_hints: list[type] | None = None) -> list[Any]:
        if type_hints is None:
            return [RawValue(payload) for payload in payloads]
        return super().from_payloads(payloads, type_hints)


class CaseFailureConverter(DefaultFailureConverter):
    """Refusals (a decision not allowed, a start refused) go to their sender without a stack trace:
    the Web UI's Send an Update dialog shows the failure's trace, with the worker's file paths."""

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        super().to_failure(exception, payload_converter, failure)
        if isinstance(exception, ApplicationError) and exception.type in REFUSAL_TYPES:
            failure.stack_trace = ""


# Workers and replayers: the same pydantic converter, with raw handler input inside workflows.
WORKER_DATA_CONVERTER = dataclasses.replace(
    pydantic_data_converter, payload_converter_class=CasePayloadConverter, failure_converter_class=CaseFailureConverter
)


def payload_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec of HITL_CODEC_KEYS (validated with the settings), or None: payloads stay plain JSON."""
    if settings.codec_keys is None:
        return None
    return EncryptionCodec(KeyRing.parse(settings.codec_keys.get_secret_value()))


def worker_data_converter(codec: PayloadCodec | None) -> DataConverter:
    """WORKER_DATA_CONVERTER with the keys of `codec`, decoding leniently (`EncryptionCodec.for_worker`:
    a signal that does not decrypt is refused by the workflow, not a wedged workflow task); for
    workers and replayers alike, so a replay decodes exactly as the worker did. Without keys (None,
    NoKeysCodec): no codec, as before encryption existed."""
    if isinstance(codec, EncryptionCodec):
        codec = codec.for_worker()
    elif isinstance(codec, NoKeysCodec):
        codec = None
    return encrypted_converter(WORKER_DATA_CONVERTER, codec)


def worker_client(client: Client) -> Client:
    """The same connection with the worker's data converter (see CasePayloadConverter), and the
    client's own keys: a worker on an encrypting client encrypts too."""
    config = client.config()
    config["data_converter"] = worker_data_converter(config["data_converter"].payload_codec)
    return Client(**config)


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached with the resolved configuration."""


def client_interceptors() -> list:
    """OpenTelemetry tracing for client calls, workflows and activities (workers inherit client interceptors)."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


async def connect_client(settings: Settings, *, resolved: Resolved | None = None) -> Client:
    """The client of every process: the pydantic converter, the payload codec of HITL_CODEC_KEYS (without
    keys, NoKeysCodec: an encrypted case is refused in one line), tracing."""
    resolved = resolved or resolve_temporal(settings)
    converter = encrypted_converter(DATA_CONVERTER, payload_codec(settings) or NoKeysCodec())
    kwargs = dict(resolved.value)
    target = kwargs.pop("target_host")
    try:
        return await asyncio.wait_for(
            Client.connect(target, **kwargs, data_converter=converter, interceptors=client_interceptors()),
            timeout=CONNECT_TIMEOUT_SECONDS,
        )
    except (TimeoutError, RuntimeError, OSError) as err:
        detail = str(err) or type(err).__name__
        raise TemporalUnavailable(f"cannot reach Temporal at {target} (from {resolved.source}): {detail}") from err
