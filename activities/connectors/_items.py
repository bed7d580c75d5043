"""The item contract of each source: which items it answers and the JSON type of each.

Defined once and applied to every connector's output, local or HTTP, so a value reaches a
policy rule with the same type whichever system answered. Validation is strict (an ARR of
`"1200000"` is a malformed answer, not a number to guess at); after validation each value is
turned back into plain JSON (timestamps become ISO 8601 strings).

Two rules keep any one answer from harming the case that carries it:

- a value whose JSON is over MAX_VALUE_JSON_BYTES is missing ("answer too large"), so one source
  cannot swell the case state, its history and the trace;
- strings are made storable (`gates.text.storable`: NUL and unpaired surrogates become U+FFFD)
  and kept as evidence. Such a character is almost always an encoding slip of the source system,
  the rest of the text is still what it says, and the replacement stays visible to the reviewer;
  kept as is, it would fail the recording of the decision on every retry (PostgreSQL's text and
  jsonb cannot hold it). A fact a rule compares ("approved\ufffd") then no longer matches, which
  sends the case to a human rather than letting it pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import to_json

from gates.evidence import (
    SOURCES,
    ConnectorResult,
    EvidenceItem,
    MissingContext,
    SourceRequest,
)
from gates.text import neutralize, storable

# Largest JSON of one item's value: a chat thread summary or a list of entitlements is well under 1 KiB.
MAX_VALUE_JSON_BYTES = 8 * 1024
# Longest reason a missing item carries (it is shown in the brief and kept in the trace).
MAX_REASON_CHARS = 500

NonNegativeInt = Annotated[int, Field(ge=0)]


class CrmItems(BaseModel):
    """crm, key {account}."""

    enterprise_arr: NonNegativeInt = Field(description="Annual recurring revenue, whole USD")
    tier: str
    contract_terms: str
    account_owner: str = Field(description="Person id of the account executive")
    open_incidents: NonNegativeInt = Field(description="Incidents not yet resolved")
    service_impact: bool = Field(description="A service-impacting sev1/sev2 opened in the last 180 days")


class ChatThread(BaseModel):
    """chat, key {thread}: the single item is named after the thread id."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    title: str
    messages: NonNegativeInt
    participants: list[str]
    approval_stated_by: str | None = Field(description="Author of the latest message stating an approval")
    customer_commitment: str | None = Field(description="The latest customer commitment quoted in the thread")
    last_message_at: datetime | None


class VendorMasterItems(BaseModel):
    """vendor_master, key {vendor}."""

    vendor_status: str = Field(description="approved, onboarding or blocked")
    risk_rating: str = Field(description="low, medium or high")
    preferred: bool
    ytd_spend_usd: float = Field(ge=0, description="Spend in the current fiscal year")


class FinanceItems(BaseModel):
    """finance, key {cost_centre}: the current fiscal year's budget."""

    budget_total_usd: float
    budget_remaining_usd: float
    budget_owner: str


class ProcurementItems(BaseModel):
    """procurement, key {vendor}."""

    prior_purchases: NonNegativeInt
    largest_prior_purchase_usd: float = Field(ge=0, description="0 when there is none")


class IamItems(BaseModel):
    """iam, key {user, system, entitlement}."""

    subject_active: bool
    subject_manager: str | None
    current_entitlements: list[str] = Field(description="Unexpired grants as `system:entitlement`")
    entitlement_owners: list[str] = Field(description="Active owners of the requested entitlement")
    prior_exceptions: NonNegativeInt = Field(description="Past access exceptions of the user on that system")


def _field_adapters(model: type[BaseModel]) -> dict[str, TypeAdapter]:
    adapters = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        adapters[name] = TypeAdapter(annotation)
    return adapters


_CHAT_THREAD = TypeAdapter(ChatThread)


@dataclass(frozen=True)
class SourceSchema:
    """A source's lookup key and items."""

    source: str
    key: tuple[str, ...]
    model: type[BaseModel]
    adapter_for: Callable[[SourceRequest, str], TypeAdapter | None]

    def item_names(self, request: SourceRequest) -> list[str]:
        """The items this source can answer for `request`."""
        if self.source == "chat":
            thread = request.key.get("thread")
            return [thread] if thread else []
        return list(self.model.model_fields)


def _fixed(model: type[BaseModel]) -> Callable[[SourceRequest, str], TypeAdapter | None]:
    adapters = _field_adapters(model)
    return lambda request, item: adapters.get(item)


def _chat_item(request: SourceRequest, item: str) -> TypeAdapter | None:
    return _CHAT_THREAD if item == request.key.get("thread") else None


SCHEMAS: dict[str, SourceSchema] = {
    "crm": SourceSchema("crm", ("account",), CrmItems, _fixed(CrmItems)),
    "chat": SourceSchema("chat", ("thread",), ChatThread, _chat_item),
    "vendor_master": SourceSchema("vendor_master", ("vendor",), VendorMasterItems, _fixed(VendorMasterItems)),
    "finance": SourceSchema("finance", ("cost_centre",), FinanceItems, _fixed(FinanceItems)),
    "procurement": SourceSchema("procurement", ("vendor",), ProcurementItems, _fixed(ProcurementItems)),
    "iam": SourceSchema("iam", ("user", "system", "entitlement"), IamItems, _fixed(IamItems)),
}
assert set(SCHEMAS) == set(SOURCES), "every source needs an item schema"


def wanted_items(request: SourceRequest) -> list[str]:
    """`request.items` without duplicates, in the order asked."""
    return list(dict.fromkeys(request.items))


def request_problem(request: SourceRequest) -> str | None:
    """Why `request` cannot be asked at all (unknown source, incomplete key), or None."""
    schema = SCHEMAS.get(request.source)
    if schema is None:
        return f"unknown source {request.source!r}; known: {', '.join(SOURCES)}"
    absent = [field for field in schema.key if not request.key.get(field)]
    if absent:
        return f"lookup key for {request.source} lacks {', '.join(absent)} (needs {', '.join(schema.key)})"
    return None


def _has_non_finite(value: Any) -> bool:
    """Is there an infinite float anywhere in `value`? JSON has no such number, but `1e999` decodes to one."""
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, float) and not math.isfinite(current):
            return True
        if isinstance(current, dict):
            pending.extend(current.values())
        elif isinstance(current, (list, tuple)):
            pending.extend(current)
    return False


def one_line_reason(text: str) -> str:
    """A reason for a human: one line, hidden characters marked, at most MAX_REASON_CHARS."""
    text = neutralize(" ".join(text.split()), keep_newlines=False)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def format_validation_error(err: ValidationError) -> str:
    parts = []
    for error in err.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return one_line_reason("; ".join(parts))


def validate_item(adapter: TypeAdapter, value: Any) -> Any:
    """The value as plain JSON, or ValidationError. Strict: no string-to-number guessing."""
    validated = adapter.validate_json(to_json(value), strict=True)
    return adapter.dump_python(validated, mode="json")


def build_result(
    request: SourceRequest,
    answer: dict[str, Any],
    *,
    ref: str | None,
    missing: dict[str, str] | None = None,
) -> ConnectorResult:
    """Turn a source's raw answer into a ConnectorResult: every wanted item is found or missing.

    `missing` gives specific reasons for items the source knowingly lacks; other wanted items
    absent from `answer` are "not returned by <source>".
    """
    schema = SCHEMAS[request.source]
    result = ConnectorResult(source=request.source)
    for item in wanted_items(request):
        adapter = schema.adapter_for(request, item)
        if adapter is None:
            result.missing.append(MissingContext(source=request.source, item=item, error="unknown item"))
        elif missing and item in missing:
            result.missing.append(MissingContext(source=request.source, item=item, error=missing[item]))
        elif item not in answer:
            error = f"not returned by {request.source}"
            result.missing.append(MissingContext(source=request.source, item=item, error=error))
        else:
            raw = storable(answer[item])
            size = len(to_json(raw))
            if size > MAX_VALUE_JSON_BYTES:
                error = (
                    f"answer too large: {item} from {request.source} is {size:,} bytes of JSON; "
                    f"at most {MAX_VALUE_JSON_BYTES // 1024} KiB"
                )
                result.missing.append(MissingContext(source=request.source, item=item, error=error))
                continue
            if _has_non_finite(raw):
                error = f"malformed answer from {request.source}: {item}: a number too large to be finite"
                result.missing.append(MissingContext(source=request.source, item=item, error=error))
                continue
            try:
                value = validate_item(adapter, raw)
            except ValidationError as err:
                error = f"malformed answer from {request.source}: {item}: {format_validation_error(err)}"
                result.missing.append(MissingContext(source=request.source, item=item, error=error))
            else:
                result.items.append(EvidenceItem(source=request.source, item=item, value=value, ref=ref))
    return result


def all_missing(request: SourceRequest, error: str) -> ConnectorResult:
    """Every wanted item missing with the same error (unknown items still say "unknown item")."""
    schema = SCHEMAS.get(request.source)
    result = ConnectorResult(source=request.source)
    error = one_line_reason(error)
    for item in wanted_items(request):
        unknown = schema is not None and schema.adapter_for(request, item) is None
        result.missing.append(
            MissingContext(source=request.source, item=item, error="unknown item" if unknown else error)
        )
    return result
