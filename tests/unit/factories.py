"""Builders for the pure unit tests: realistic payloads, evidence bundles and precedents.

Everything here is plain data; nothing starts a server or touches a database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from activities.policy_files import bundled_policy_dir, load_policies
from gates.cases import (
    AccessEscalationRequest,
    CaseKind,
    ProcurementRequest,
    RenewalDiscountRequest,
)
from gates.evidence import ContextBundle, EvidenceItem, MissingContext
from gates.kinds import ACCESS, PROCUREMENT, RENEWAL
from gates.policy import Facts, Policy
from gates.precedent import Precedent

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


@cache
def bundled() -> dict[CaseKind, Policy]:
    return load_policies(bundled_policy_dir())


def policy(kind: CaseKind) -> Policy:
    return bundled()[kind]


def context(items: dict[str, Any], missing: dict[str, str] | None = None) -> ContextBundle:
    """`{"crm.tier": "enterprise"}` -> a bundle with the item `crm: tier`."""
    bundle = ContextBundle()
    for name, value in items.items():
        source, item = name.split(".", 1)
        bundle.items.append(EvidenceItem(source=source, item=item, value=value, ref=f"{source}://{item}"))
    for name, error in (missing or {}).items():
        source, item = name.split(".", 1)
        bundle.missing.append(MissingContext(source=source, item=item, error=error))
    return bundle


# --- renewal ---------------------------------------------------------------------------------


def renewal(**overrides: Any) -> RenewalDiscountRequest:
    fields: dict[str, Any] = {
        "requester": "sam.sales",
        "justification": "Customer had two sev1 outages this year",
        "account": "acme_enterprise",
        "renewal": "fy26",
        "requested_discount_pct": Decimal("28"),
    }
    fields.update(overrides)
    return RenewalDiscountRequest(**fields)


CRM_FULL = {
    "crm.enterprise_arr": 1_200_000,
    "crm.tier": "enterprise",
    "crm.contract_terms": "3-year, annual billing",
    "crm.account_owner": "sam.sales",
    "crm.open_incidents": 1,
    "crm.service_impact": True,
}


def renewal_facts(request: RenewalDiscountRequest, evidence: ContextBundle | None = None, precedents: int = 0) -> Facts:
    return RENEWAL.facts(request, evidence if evidence is not None else context(CRM_FULL), precedents)


# --- procurement -----------------------------------------------------------------------------


def procurement(**overrides: Any) -> ProcurementRequest:
    fields: dict[str, Any] = {
        "requester": "pat.buyer",
        "justification": "Reserved capacity for the Q4 launch",
        "request_id": "pr-2026-0142",
        "vendor": "northwind",
        "category": "software",
        "amount": Decimal("20000.00"),
        "currency": "USD",
        "cost_centre": "cc-eng-platform",
    }
    fields.update(overrides)
    return ProcurementRequest(**fields)


PROCUREMENT_EVIDENCE = {
    "vendor_master.vendor_status": "approved",
    "vendor_master.risk_rating": "low",
    "vendor_master.preferred": True,
    "vendor_master.ytd_spend_usd": 40_000.0,
    "finance.budget_total_usd": 500_000.0,
    "finance.budget_remaining_usd": 200_000.0,
    "finance.budget_owner": "olive.ops",
    "procurement.prior_purchases": 4,
    "procurement.largest_prior_purchase_usd": 18_000.0,
}


def procurement_facts(request: ProcurementRequest, **evidence_overrides: Any) -> Facts:
    items = {**PROCUREMENT_EVIDENCE, **{k.replace("__", "."): v for k, v in evidence_overrides.items()}}
    return PROCUREMENT.facts(request, context(items), 0)


# --- access ----------------------------------------------------------------------------------


def access(**overrides: Any) -> AccessEscalationRequest:
    fields: dict[str, Any] = {
        "requester": "lee.eng",
        "justification": "Investigating a replication incident",
        "subject_user": "lee.eng",
        "system": "billing-db",
        "entitlement": "read_replica",
        "duration_days": 7,
        "policy_exception": "Access outside the on-call rota",
    }
    fields.update(overrides)
    return AccessEscalationRequest(**fields)


IAM_EVIDENCE = {
    "iam.subject_active": True,
    "iam.subject_manager": "mia.manager",
    "iam.current_entitlements": ["billing-db:reader"],
    "iam.entitlement_owners": ["dana.dba"],
    "iam.prior_exceptions": 0,
}


def access_facts(request: AccessEscalationRequest, **evidence_overrides: Any) -> Facts:
    items = {**IAM_EVIDENCE, **{k.replace("__", "."): v for k, v in evidence_overrides.items()}}
    return ACCESS.facts(request, context(items), 0)


# --- precedents ------------------------------------------------------------------------------


def precedent(n: int, outcome: str = "approve", tags: tuple[str, ...] = ("service_impact", "enterprise")) -> Precedent:
    return Precedent(
        case_id=f"renewal_discount_exception:globex_{n}/fy25",
        kind=CaseKind.RENEWAL,
        policy="discount_policy_v3_2",
        reason_codes=["threshold_breach"],
        amount_band="discount_20_30",
        tags=list(tags),
        outcome=outcome,
        decided_by=f"fin.reviewer{n}",
        reason=f"precedent reason {n}",
        decided_at=T0.replace(year=2025, month=n % 12 + 1),
    )
