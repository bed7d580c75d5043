"""Case payloads: what an engineer's service sends to start a case, one model per kind.

The case ID (the Temporal workflow ID) derives from the business key, so starting the
same case twice finds the running case instead of opening a second one.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)

from gates.text import person_text_problem

# Identifiers that appear in case IDs: lower-case slugs such as acme_enterprise or fy26.
Slug = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
PersonId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9_.@-]*$")
]

# The longest text a person may write in one field (a reason, a justification, a question).
MAX_TEXT_CHARS = 4000


def _readable(text: str) -> str:
    problem = person_text_problem(text)
    if problem:
        raise ValueError(f"text {problem}")
    return text


# A person's words: visible, storable, bounded (see gates/text.py).
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_readable)
]
# A whole number sent as a JSON number: `true` is not one day, and neither is "1".
WholeNumber = Annotated[int, Strict()]


class CaseKind(StrEnum):
    RENEWAL = "renewal_discount_exception"
    PROCUREMENT = "procurement_threshold_breach"
    ACCESS = "access_escalation"


# The Temporal workflow type of each kind: part of the public interface (README), used by
# `workflows/kinds.py` to name the workflows and by clients that start cases without importing them.
WORKFLOW_TYPES: dict[CaseKind, str] = {
    CaseKind.RENEWAL: "RenewalDiscountException",
    CaseKind.PROCUREMENT: "ProcurementThresholdBreach",
    CaseKind.ACCESS: "AccessEscalation",
}

# The task queue the worker polls and clients start cases on, unless HITL_TASK_QUEUE says otherwise.
DEFAULT_TASK_QUEUE = "hitl-cases"


class CaseRequest(BaseModel):
    """Common fields of every case payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[CaseKind]
    requester: PersonId = Field(description="Who asks; may not decide their own case")
    justification: Text = Field(description="Why the requester needs the exception")

    def business_key(self) -> str:
        raise NotImplementedError

    def case_id(self) -> str:
        return case_id_for(self.kind, self.business_key())

    def subject(self) -> str | None:
        """The person the case is about, who may not decide it (an access request's user); None if nobody."""
        return None


class RenewalDiscountRequest(CaseRequest):
    kind: ClassVar[CaseKind] = CaseKind.RENEWAL
    account: Slug = Field(description="CRM account id, e.g. acme_enterprise")
    renewal: Slug = Field(description="Renewal period, e.g. fy26")
    requested_discount_pct: Decimal = Field(gt=0, lt=100, max_digits=5, decimal_places=2)
    chat_thread: Slug | None = Field(default=None, description="Chat thread with the approval discussion")

    def business_key(self) -> str:
        return f"{self.account}/{self.renewal}"


class ProcurementRequest(CaseRequest):
    kind: ClassVar[CaseKind] = CaseKind.PROCUREMENT
    request_id: Slug = Field(description="Purchase request number, e.g. pr-2026-0142")
    vendor: Slug
    category: Slug = Field(description="Spend category, e.g. software, hardware, services")
    amount: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = Field(description="ISO 4217, e.g. USD")
    cost_centre: Slug

    def business_key(self) -> str:
        return f"{self.vendor}/{self.request_id}"


class AccessEscalationRequest(CaseRequest):
    kind: ClassVar[CaseKind] = CaseKind.ACCESS
    subject_user: PersonId = Field(description="Whose access changes")
    system: Slug
    entitlement: Slug = Field(description="Role or entitlement requested")
    duration_days: WholeNumber = Field(gt=0, le=365)
    policy_exception: Text = Field(description="The policy exception this access needs")

    def subject(self) -> str | None:
        return self.subject_user

    def business_key(self) -> str:
        return f"{self.subject_user}/{self.system}/{self.entitlement}"


REQUEST_MODELS: dict[CaseKind, type[CaseRequest]] = {
    CaseKind.RENEWAL: RenewalDiscountRequest,
    CaseKind.PROCUREMENT: ProcurementRequest,
    CaseKind.ACCESS: AccessEscalationRequest,
}

# Short names users type on the command line (`hitl start renewal ...`).
KIND_ALIASES: dict[str, CaseKind] = {
    "renewal": CaseKind.RENEWAL,
    "procurement": CaseKind.PROCUREMENT,
    "access": CaseKind.ACCESS,
    **{kind.value: kind for kind in CaseKind},
}

_UNSAFE = re.compile(r"[^a-z0-9_.@/-]")


def case_id_for(kind: CaseKind, business_key: str) -> str:
    """`renewal_discount_exception:acme_enterprise/fy26`: readable, and the same for the same business key."""
    return f"{kind.value}:{_UNSAFE.sub('-', business_key.lower())}"
