"""Evidence: what the connectors found, and what they could not find.

Every fact a brief or a policy rule uses is an `EvidenceItem` naming its source and item
(`crm: enterprise_arr`), so the decision trace can list exactly what was consulted.
A source that failed permanently, or answered with something malformed, yields
`MissingContext` instead: the policy sends such a case to a human, never to a guess.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# The systems of record a case can consult. Each is one activity ("gather_<source>").
SOURCES: tuple[str, ...] = ("crm", "chat", "vendor_master", "finance", "procurement", "iam")


class SourceRequest(BaseModel):
    """What a workflow asks one source for: the lookup key and the items it wants."""

    source: str = Field(description="One of SOURCES")
    key: dict[str, str] = Field(description="Lookup key, e.g. {'account': 'acme_enterprise'}")
    items: list[str] = Field(description="Items wanted, e.g. ['enterprise_arr', 'tier']")


class EvidenceItem(BaseModel):
    source: str
    item: str
    value: Any = Field(description="JSON value as the source returned it, after validation")
    ref: str | None = Field(default=None, description="Where a human can look it up (URL, record id)")

    @property
    def label(self) -> str:
        return f"{self.source}: {self.item}"


class MissingContext(BaseModel):
    source: str
    item: str
    error: str = Field(description="Why it is missing: not found, malformed answer, source unreachable ...")


class ConnectorResult(BaseModel):
    """One source's answer: the items found and those missing. Never raises for permanent failures."""

    source: str
    items: list[EvidenceItem] = Field(default_factory=list)
    missing: list[MissingContext] = Field(default_factory=list)


class ContextBundle(BaseModel):
    """All evidence of one gathering round, plus reviewer questions and answers from request_info rounds."""

    items: list[EvidenceItem] = Field(default_factory=list)
    missing: list[MissingContext] = Field(default_factory=list)

    @classmethod
    def merge(cls, results: list[ConnectorResult]) -> ContextBundle:
        bundle = cls()
        for result in results:
            bundle.items.extend(result.items)
            bundle.missing.extend(result.missing)
        return bundle

    def value(self, source: str, item: str, default: Any = None) -> Any:
        for evidence in self.items:
            if evidence.source == source and evidence.item == item:
                return evidence.value
        return default

    def has(self, source: str, item: str) -> bool:
        return any(e.source == source and e.item == item for e in self.items)

    def consulted(self) -> list[str]:
        """`source: item` labels of everything asked for, found or not, in a stable order."""
        labels = [e.label for e in self.items] + [f"{m.source}: {m.item}" for m in self.missing]
        return sorted(set(labels))
