"""Which version of each kind's policy is in force: a record, not a file's presence.

A policy file is a proposal; an activation (a row in PostgreSQL, activities/store/policy_activations.py)
says that a version's exact text is in force for its kind since a moment, by whose approval. The text
itself is kept in the row, so editing or deleting the file afterwards changes nothing. Pure: the
digest and the parse are computed from text already in hand.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from gates.cases import CaseKind
from gates.policy import Policy, parse_policy_text

DIGEST_PREFIX = "sha256:"


class PolicyActivation(BaseModel):
    """One activation: `policy_text` (the file's full YAML) is in force for `kind` since `activated_at`."""

    model_config = ConfigDict(frozen=True)
    kind: CaseKind
    policy_ref: str
    version: str
    digest: str
    policy_text: str
    activated_at: datetime
    approved_by: list[str]
    reason: str
    change_id: str | None = None
    trace_id: str | None = None

    def policy(self) -> Policy:
        """The activated text, parsed and validated as any policy file is."""
        return parse_policy_text(self.policy_text.encode(), f"active policy {self.policy_ref} ({self.digest[:19]})")


def policy_digest(policy_text: str) -> str:
    """`sha256:<hex>` of the text's UTF-8 bytes (the file's bytes): the same text, the same digest."""
    return DIGEST_PREFIX + hashlib.sha256(policy_text.encode()).hexdigest()
