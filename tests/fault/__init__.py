"""Fault suite: cases keep their promise when parts of the system fail.

Every test here is bounded (seconds to about a minute), runs on loopback only, is marked `fault`
(and `slow` when it starts servers) and runs in the normal `pytest` / `make test` run; select it
alone with `pytest -m fault` or `pytest tests/fault`. Each scenario ends the same way: every case
it started has finished, PostgreSQL holds exactly one `decision_traces` row for it (queried by
case id) and one precedent, and the row, the trace inside it and the workflow's result agree.

The modules that break things run on a dedicated stack (`conftest.fault_stack`), never on the
session fixtures other tests share: their own embedded PostgreSQL (migrated and seeded), their
own Temporal dev server persisting to a db file in the stack's temporary directory (so it can be
stopped and restarted on the same port), and the worker as a subprocess
(`python -m hitl_temporal.cli worker`, unique task queue), with short-delay copies of the policies
when a test needs timers to fire within seconds.

| Module | Fault | Checks |
|---|---|---|
| test_worker_crash | SIGKILL of the worker while cases gather (slow HTTP CRM), wait at the gate, and record (INSERTs held by a \
table lock) | a new worker finishes every case; lost activities are retried; no half-written row |
| test_temporal_restart | SIGTERM and restart of the Temporal server while cases wait on reminder/escalation timers \
| timers fire after the restart; outbox and trace show every reminder, escalation and the timeout |
| test_postgres_outage | fast shutdown of PostgreSQL while decisions are being recorded (INSERTs held by a table lock), more \
decisions taken while it is down | `record_decision` retries until the server is back; each case recorded once |
| test_decision_races | the same decision 3x through update and signal; a decision at the escalation deadline; late decisions \
while the completing workflow task is in flight (worker frozen with SIGSTOP); floods of oversized bad signals \
| one outcome, recorded once, a trace consistent with who was eligible when; late deciders told "already decided"; bad signals \
never keep a case from being recorded or shown |
| test_history_bounds | (none: a static check) \
| no continue-as-new, and why none is needed: every path's history stays under 200 events |

Losing the worker costs time, not correctness: an activity that was running on it is retried only
once its start-to-close timeout (30 s) expires, which is what bounds test_worker_crash.
"""
