"""How much each channel can make one case carry, and the server limits these bounds rely on.

Anyone who can reach Temporal can signal a case, and Temporal terminates a workflow whose history
passes its limits (50 MB or 51,200 events by default), with no chance to record anything. So every
channel has a bound here, owned by the gate, and the stacks we run (`hitl dev`, the tests, the
compose file) set the server limits below for the namespace:

- a payload over SERVER_BLOB_LIMIT_BYTES is refused by the server at the door;
- a run takes at most SERVER_MAX_SIGNALS_PER_RUN signals, then the server refuses more;
- a case waiting at its gate continues as new (a fresh run with its state carried over) when
  Temporal suggests it, after CONTINUE_AS_NEW_AFTER_SIGNALS signals, or when its history passes
  CONTINUE_AS_NEW_AFTER_HISTORY_BYTES or CONTINUE_AS_NEW_AFTER_EVENTS, so signals never stop;

so the signals one run can hold stay far below the history limit, and what the workflow itself
writes (its state when it continues as new, the decision trace) is fitted under
MAX_CASE_PAYLOAD_BYTES.
"""

from __future__ import annotations

# Server side (dynamic config of the dev server and the compose stack).
SERVER_BLOB_LIMIT_BYTES = 512 * 1024
SERVER_BLOB_WARN_BYTES = 256 * 1024
SERVER_MAX_SIGNALS_PER_RUN = 64
# Consecutive failed workflow tasks after which the server sets TemporalReportedProblems
# (the inbox leaves such cases out; `hitl ops stuck` reports them).
SERVER_REPORTED_PROBLEMS_AFTER = 2

# A waiting case continues as new when Temporal suggests it, or once its run has taken this many
# signals (well before the server refuses more), or its history passes either size below (far under
# Temporal's 50 MB / 51,200 events; Temporal's own suggestion is not always given in time).
CONTINUE_AS_NEW_AFTER_SIGNALS = 48
CONTINUE_AS_NEW_AFTER_HISTORY_BYTES = 4 * 1024 * 1024
CONTINUE_AS_NEW_AFTER_EVENTS = 4000

# What the workflow writes: the carried-over state and the decision trace stay under this.
MAX_CASE_PAYLOAD_BYTES = 256 * 1024

# Per channel.
MAX_KEPT_ATTEMPTS = 50  # rejected decision attempts kept in the case (the first ones and the latest)
MAX_KEPT_PAYLOAD_CHARS = 1000  # of a rejected attempt's payload, as a preview
MAX_KEPT_ERROR_CHARS = 500
MAX_REQUEST_INFO_ROUNDS = 10  # request_info round trips; then the gate asks for approve or reject
QUESTIONS_IN_BRIEF = 3  # the latest reviewer questions the brief repeats; the rest are in the trace
MAX_OPERATOR_ACTIONS = 30  # notes, retries, escalations, reassignments; cancel is always possible
MAX_ATTACHMENT_CHARS = 16_000  # of the text of a file attached to an answer (`hitl answer --file`)
MAX_ATTACHMENT_NAME_CHARS = 200


def dev_server_dynamic_config() -> dict[str, int]:
    """`--dynamic-config-value` settings for a Temporal server we run (dev server, compose)."""
    return {
        "limit.blobSize.error": SERVER_BLOB_LIMIT_BYTES,
        "limit.blobSize.warn": SERVER_BLOB_WARN_BYTES,
        "history.maximumSignalsPerExecution": SERVER_MAX_SIGNALS_PER_RUN,
        "system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute": SERVER_REPORTED_PROBLEMS_AFTER,
    }
