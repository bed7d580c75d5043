"""The example catalogue: the case files in the checkout's `examples/` folder (the README starts its
tour with them), which of them need a human, and who may decide each at the level it opens at.

Tests and the benchmark build their cases from these, so the payloads a newcomer runs by hand are
the ones the suite exercises.
"""

from __future__ import annotations

import json
from pathlib import Path

from gates.cases import REQUEST_MODELS, CaseKind, CaseRequest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# The example files: one per kind that needs a human, one per kind that policy decides alone.
HUMAN_EXAMPLES = {
    CaseKind.RENEWAL: "renewal_acme_fy26.json",
    CaseKind.PROCUREMENT: "procurement_northwind_reserved.json",
    CaseKind.ACCESS: "access_eng_lee_prod_db_admin.json",
}
AUTO_EXAMPLES = {
    CaseKind.RENEWAL: "renewal_globex_fy26_within_policy.json",
    CaseKind.PROCUREMENT: "procurement_woodgrove_within_policy.json",
    CaseKind.ACCESS: "access_eng_lee_github_within_policy.json",
}
# Someone who may decide each human example at the level it opens at (with the seeded precedent).
FIRST_REVIEWER = {CaseKind.RENEWAL: "fin_rev_ana", CaseKind.PROCUREMENT: "vp_ops_raj", CaseKind.ACCESS: "sec_rev_eli"}


def example_payload(kind: CaseKind, *, human: bool) -> dict:
    """The example file's JSON as it is on disk (a test may change fields before validating it)."""
    name = (HUMAN_EXAMPLES if human else AUTO_EXAMPLES)[kind]
    return json.loads((EXAMPLES / name).read_text())


def example(kind: CaseKind, *, human: bool, **changes) -> CaseRequest:
    """The example request of `kind` (one that needs a human, or one policy decides alone), with `changes`."""
    data = example_payload(kind, human=human)
    data.update(changes)
    return REQUEST_MODELS[kind].model_validate(data)
