"""What differs between the three kinds of case, as data and pure functions.

Each `CaseSpec` says which sources a kind consults, how its policy facts are derived from the
payload and the evidence, and how it is named in briefs, traces and the inbox. Workflows stay
thin: one class per kind over one shared loop, dispatching through `SPECS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gates.cases import (
    AccessEscalationRequest,
    CaseKind,
    CaseRequest,
    ProcurementRequest,
    RenewalDiscountRequest,
)
from gates.evidence import ContextBundle, SourceRequest
from gates.policy import Facts
from gates.precedent import amount_band

# Entitlements that grant administrative power; requesting one is a threshold breach.
PRIVILEGED_ENTITLEMENTS = frozenset({"admin", "root", "superuser", "prod_admin", "db_admin", "org_owner", "billing_admin"})


def _request_facts(request: CaseRequest) -> Facts:
    return {f"request.{name}": value for name, value in request.model_dump(mode="json").items()}


def _evidence_facts(context: ContextBundle) -> Facts:
    return {f"{e.source}.{e.item}": e.value for e in context.items}


@dataclass(frozen=True)
class CaseSpec:
    kind: CaseKind
    gate_title: str
    sources: Callable[[Any], list[SourceRequest]]
    derive: Callable[[Any, Facts], Facts]
    magnitude: Callable[[Any], Decimal | int]
    tags: Callable[[Facts], list[str]]
    entities: Callable[[Any], dict[str, str]]
    ask: Callable[[Any], str]
    amount_minor: Callable[[Any], int | None]

    def facts(self, request: CaseRequest, context: ContextBundle, precedent_count: int) -> Facts:
        """Everything a policy rule may test, named `<namespace>.<name>`."""
        facts = {**_request_facts(request), **_evidence_facts(context), "precedent.count": precedent_count}
        facts.update(self.derive(request, facts))
        return facts

    def band(self, request: CaseRequest) -> str:
        return amount_band(self.kind, self.magnitude(request))


# --- Renewal discount exception -------------------------------------------------------------


def _renewal_sources(r: RenewalDiscountRequest) -> list[SourceRequest]:
    sources = [
        SourceRequest(
            source="crm",
            key={"account": r.account},
            items=["enterprise_arr", "tier", "contract_terms", "account_owner", "open_incidents", "service_impact"],
        )
    ]
    if r.chat_thread:
        sources.append(SourceRequest(source="chat", key={"thread": r.chat_thread}, items=[r.chat_thread]))
    return sources


def _renewal_derive(r: RenewalDiscountRequest, facts: Facts) -> Facts:
    thread = facts.get(f"chat.{r.chat_thread}") if r.chat_thread else None
    # A cited thread that could not be read is unknown, not "no promise made": None sends it to a human.
    derived: Facts = {"derived.chat_thread_read": True if not r.chat_thread or isinstance(thread, dict) else None}
    if isinstance(thread, dict):
        derived["chat.customer_commitment"] = thread.get("customer_commitment")
        derived["chat.approval_stated_by"] = thread.get("approval_stated_by")
    return derived


def _renewal_tags(facts: Facts) -> list[str]:
    tags = []
    if facts.get("crm.service_impact") is True:
        tags.append("service_impact")
    if facts.get("chat.customer_commitment"):
        tags.append("customer_commitment")
    if facts.get("chat.approval_stated_by"):
        tags.append("vp_thread_approval")
    if facts.get("crm.tier") == "enterprise":
        tags.append("enterprise")
    return tags


RENEWAL = CaseSpec(
    kind=CaseKind.RENEWAL,
    gate_title="Finance",
    sources=_renewal_sources,
    derive=_renewal_derive,
    magnitude=lambda r: r.requested_discount_pct,
    tags=_renewal_tags,
    entities=lambda r: {"account": r.account, "renewal": r.renewal},
    ask=lambda r: f"{r.requested_discount_pct}% renewal discount for {r.account} ({r.renewal})",
    amount_minor=lambda r: None,
)


# --- Procurement threshold breach -----------------------------------------------------------


def _procurement_sources(r: ProcurementRequest) -> list[SourceRequest]:
    return [
        SourceRequest(
            source="vendor_master",
            key={"vendor": r.vendor},
            items=["vendor_status", "risk_rating", "preferred", "ytd_spend_usd"],
        ),
        SourceRequest(
            source="finance",
            key={"cost_centre": r.cost_centre},
            items=["budget_total_usd", "budget_remaining_usd", "budget_owner"],
        ),
        SourceRequest(source="procurement", key={"vendor": r.vendor}, items=["prior_purchases", "largest_prior_purchase_usd"]),
    ]


def _procurement_derive(r: ProcurementRequest, facts: Facts) -> Facts:
    # Only USD amounts are compared with thresholds; any other currency needs a human to
    # confirm the rate instead of a guessed conversion.
    amount_usd = float(r.amount) if r.currency == "USD" else None
    remaining = facts.get("finance.budget_remaining_usd")
    exceeds = None
    if amount_usd is not None and isinstance(remaining, (int, float)) and not isinstance(remaining, bool):
        exceeds = amount_usd > remaining if math.isfinite(remaining) else None
    return {"derived.amount_usd": amount_usd, "derived.exceeds_budget": exceeds}


def _procurement_tags(facts: Facts) -> list[str]:
    tags = []
    if facts.get("vendor_master.preferred") is True:
        tags.append("preferred_vendor")
    if facts.get("procurement.prior_purchases") == 0:
        tags.append("new_vendor")
    if facts.get("derived.exceeds_budget") is True:
        tags.append("over_budget")
    if facts.get("vendor_master.risk_rating") == "high":
        tags.append("high_risk_vendor")
    return tags


PROCUREMENT = CaseSpec(
    kind=CaseKind.PROCUREMENT,
    gate_title="Ops",
    sources=_procurement_sources,
    derive=_procurement_derive,
    magnitude=lambda r: r.amount,
    tags=_procurement_tags,
    entities=lambda r: {"vendor": r.vendor, "purchase_request": r.request_id, "cost_centre": r.cost_centre},
    ask=lambda r: f"{r.amount:,.2f} {r.currency} {r.category} purchase from {r.vendor} ({r.request_id})",
    amount_minor=lambda r: int(r.amount * 100),
)


# --- Access escalation ----------------------------------------------------------------------


def _access_sources(r: AccessEscalationRequest) -> list[SourceRequest]:
    return [
        SourceRequest(
            source="iam",
            key={"user": r.subject_user, "system": r.system, "entitlement": r.entitlement},
            items=["subject_active", "subject_manager", "current_entitlements", "entitlement_owners", "prior_exceptions"],
        )
    ]


def _access_tags(facts: Facts) -> list[str]:
    tags = []
    if facts.get("derived.privileged") is True:
        tags.append("privileged")
    duration = facts.get("request.duration_days")
    if isinstance(duration, int) and duration <= 30:
        tags.append("temporary")
    if (facts.get("iam.prior_exceptions") or 0) > 0:
        tags.append("repeat_exception")
    return tags


ACCESS = CaseSpec(
    kind=CaseKind.ACCESS,
    gate_title="Security",
    sources=_access_sources,
    derive=lambda r, facts: {"derived.privileged": r.entitlement in PRIVILEGED_ENTITLEMENTS},
    magnitude=lambda r: r.duration_days,
    tags=_access_tags,
    entities=lambda r: {"subject_user": r.subject_user, "system": r.system, "entitlement": r.entitlement},
    ask=lambda r: f"{r.entitlement} on {r.system} for {r.subject_user}, {r.duration_days} days",
    amount_minor=lambda r: None,
)

SPECS: dict[CaseKind, CaseSpec] = {spec.kind: spec for spec in (RENEWAL, PROCUREMENT, ACCESS)}
