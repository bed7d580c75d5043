"""The connector port: one source of evidence, asked for items under a lookup key.

Exceptions::

    TransientSourceError    the source may answer if asked again (timeout, connection
                            refused, HTTP 5xx or 429): the activity raises it as a
                            retryable ApplicationError and Temporal retries.

Everything permanent (not found, refused, malformed) is not an exception: it comes back as
`MissingContext` items in the `ConnectorResult`, and the policy sends the case to a human.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gates.evidence import ConnectorResult, SourceRequest


class TransientSourceError(RuntimeError):
    """The source could not answer right now; asking again later may succeed."""

    def __init__(self, source: str, message: str):
        super().__init__(message)
        self.source = source


@runtime_checkable
class Connector(Protocol):
    async def fetch(self, request: SourceRequest) -> ConnectorResult:
        """Every item in `request.items` comes back found or missing; raises only TransientSourceError."""
        ...
