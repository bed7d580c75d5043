"""The one list of custom search attributes this project upserts.

`hitl dev`, the test fixtures and docker-compose all register exactly this list:
a workflow that upserts an attribute the namespace does not know fails its
workflow task forever, so nothing else may define attribute names.

The dev server's SQLite visibility store caps each type per namespace
(10 Keyword, 3 Int, 3 Text, 3 KeywordList); `test_search_attributes.py`
keeps this list inside those caps.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

# Which kind of case this is: renewal_discount_exception, procurement_threshold_breach, ...
CASE_KIND = SearchAttributeKey.for_keyword("HitlCaseKind")
# The business key the case ID derives from (account/renewal, vendor/po, user/system/role).
BUSINESS_KEY = SearchAttributeKey.for_keyword("HitlBusinessKey")
# Where the case is in the loop: gathering, waiting, awaiting_info (a question waits for its answer), recording, decided.
CASE_STATE = SearchAttributeKey.for_keyword("HitlCaseState")
# Review gate that owns the decision: finance, ops, security.
GATE = SearchAttributeKey.for_keyword("HitlGate")
# Final outcome once decided: approve, reject, timeout_*, auto_approve.
OUTCOME = SearchAttributeKey.for_keyword("HitlOutcome")
# Policy id and version resolved at case start, e.g. discount_policy_v3_2.
POLICY = SearchAttributeKey.for_keyword("HitlPolicy")
# Who asked; lets a reviewer's inbox hide cases they may not decide.
REQUESTER = SearchAttributeKey.for_keyword("HitlRequester")
# Reviewer group of the current escalation level.
REVIEWER_GROUP = SearchAttributeKey.for_keyword("HitlReviewerGroup")

# Current escalation level (0 = first level of the ladder).
ESCALATION_LEVEL = SearchAttributeKey.for_int("HitlEscalationLevel")
# Amount at stake in minor units (cents) where the kind has one.
AMOUNT_MINOR = SearchAttributeKey.for_int("HitlAmountMinor")

# One-line ask, searchable by words.
ASK = SearchAttributeKey.for_text("HitlAsk")

# Every group that may decide right now (current level and above).
ELIGIBLE_GROUPS = SearchAttributeKey.for_keyword_list("HitlEligibleGroups")
# Why a human is needed: threshold_breach, unusual_case, missing_data, customer_commitment.
REASON_CODES = SearchAttributeKey.for_keyword_list("HitlReasonCodes")

# When the gate opened and when the current level next escalates or times out.
GATE_OPENED_AT = SearchAttributeKey.for_datetime("HitlGateOpenedAt")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("HitlNextDeadline")

# Since the trust patch: who sits in an eligible group but may not decide now (the subject of an
# access case, a delegate of the requester, someone away who delegated), so the inbox leaves it out.
MAY_NOT_DECIDE = SearchAttributeKey.for_keyword_list("HitlMayNotDecide")

# The attributes a case owns since HARDENED_PATCH (unset at its first task whatever the starter set):
# kept as it was, so cases started before the trust patch send the upserts their histories hold.
HARDENED_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    CASE_KIND,
    BUSINESS_KEY,
    CASE_STATE,
    GATE,
    OUTCOME,
    POLICY,
    REQUESTER,
    REVIEWER_GROUP,
    ESCALATION_LEVEL,
    AMOUNT_MINOR,
    ASK,
    ELIGIBLE_GROUPS,
    REASON_CODES,
    GATE_OPENED_AT,
    NEXT_DEADLINE,
)
# Every attribute to register on a namespace (the dev stack, the tests, the compose file).
ALL_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (*HARDENED_SEARCH_ATTRIBUTES, MAY_NOT_DECIDE)

# Names as the `temporal` CLI and the admin tools spell the types.
_CLI_TYPE_NAMES = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "TEXT": "Text",
    "KEYWORD_LIST": "KeywordList",
    "DATETIME": "Datetime",
    "DOUBLE": "Double",
    "BOOL": "Bool",
}


def cli_type_name(key: SearchAttributeKey) -> str:
    """The type name `temporal server start-dev --search-attribute` and `operator search-attribute create` accept."""
    return _CLI_TYPE_NAMES[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key in ALL_SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={cli_type_name(key)}"]
    return flags
