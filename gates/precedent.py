"""Precedent: the features a decision is remembered by, and how a new case is matched to past ones.

A precedent informs the brief and can shorten the path the policy allows (start the gate at a
lower escalation level); it never removes a human the policy requires.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from gates.cases import CaseKind

# Upper bounds (exclusive) and labels of each kind's band; the last label is open-ended.
_DISCOUNT_PCT_BANDS = ((Decimal(10), "discount_0_10"), (Decimal(20), "discount_10_20"), (Decimal(30), "discount_20_30"))
_DISCOUNT_TOP = "discount_30_plus"
_AMOUNT_USD_BANDS = (
    (Decimal(10_000), "amount_lt_10k"),
    (Decimal(50_000), "amount_10k_50k"),
    (Decimal(250_000), "amount_50k_250k"),
)
_AMOUNT_TOP = "amount_250k_plus"
_DURATION_DAYS_BANDS = ((8, "duration_le_7d"), (31, "duration_8_30d"), (91, "duration_31_90d"))
_DURATION_TOP = "duration_gt_90d"


def _band(value, bands, top: str) -> str:
    for upper, label in bands:
        if value < upper:
            return label
    return top


def amount_band(kind: CaseKind, magnitude: Decimal | int) -> str:
    """The band a case's size falls in: discount percent, purchase amount (USD), or access duration (days)."""
    if kind is CaseKind.RENEWAL:
        return _band(Decimal(magnitude), _DISCOUNT_PCT_BANDS, _DISCOUNT_TOP)
    if kind is CaseKind.PROCUREMENT:
        return _band(Decimal(magnitude), _AMOUNT_USD_BANDS, _AMOUNT_TOP)
    return _band(int(magnitude), _DURATION_DAYS_BANDS, _DURATION_TOP)


class PrecedentFeatures(BaseModel):
    """What a case is matched on."""

    kind: CaseKind
    policy: str = Field(description="Policy id and version, e.g. discount_policy_v3_2")
    reason_codes: list[str] = Field(default_factory=list)
    amount_band: str
    tags: list[str] = Field(default_factory=list, description="e.g. service_impact, customer_commitment")


class Precedent(BaseModel):
    """A past decision, as cited in a brief."""

    case_id: str
    kind: CaseKind
    policy: str
    reason_codes: list[str]
    amount_band: str
    tags: list[str]
    outcome: str
    decided_by: str
    reason: str
    decided_at: datetime
