-- Decision traces: one row per decided case, written exactly once.
-- `decision_key` is chosen by the workflow (case id + first run id), so activity
-- retries and duplicate decisions hit the unique constraint instead of a second row.
CREATE TABLE decision_traces (
    id            bigserial PRIMARY KEY,
    decision_key  text NOT NULL UNIQUE,
    case_id       text NOT NULL,
    run_id        text NOT NULL,
    trace_name    text NOT NULL,           -- e.g. renewal_discount_exception
    kind          text NOT NULL,
    business_key  text NOT NULL,
    policy        text NOT NULL,           -- policy id and version, e.g. discount_policy_v3_2
    gate          text,                    -- finance / ops / security; NULL when policy decided alone
    outcome       text NOT NULL,
    decided_by    text NOT NULL,           -- reviewer id, or policy:<id> / timeout:<gate>
    decided_via   text NOT NULL,           -- update, signal, policy, timeout, operator
    reason        text NOT NULL,
    reason_codes  text[] NOT NULL DEFAULT '{}',
    otel_trace_id text,
    opened_at     timestamptz NOT NULL,
    decided_at    timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    trace         jsonb NOT NULL           -- the whole trace document (entities, inputs, brief, findings, ...)
);
CREATE INDEX decision_traces_case_id ON decision_traces (case_id);
CREATE INDEX decision_traces_decided_at ON decision_traces (decided_at);

-- Precedents: the features of each decision that later cases match on.
CREATE TABLE precedents (
    id                bigserial PRIMARY KEY,
    decision_trace_id bigint NOT NULL UNIQUE REFERENCES decision_traces (id),
    case_id           text NOT NULL,
    kind              text NOT NULL,
    policy            text NOT NULL,
    reason_codes      text[] NOT NULL DEFAULT '{}',
    amount_band       text,
    tags              text[] NOT NULL DEFAULT '{}',
    outcome           text NOT NULL,
    decided_by        text NOT NULL,
    reason            text NOT NULL,
    decided_at        timestamptz NOT NULL
);
CREATE INDEX precedents_lookup ON precedents (kind, amount_band);
CREATE INDEX precedents_tags ON precedents USING gin (tags);

-- Notification outbox: reminders and escalations for reviewers. The notifier
-- activity inserts here (idempotent on notification_key) and optionally posts a webhook.
CREATE TABLE notifications (
    id               bigserial PRIMARY KEY,
    notification_key text NOT NULL UNIQUE,
    case_id          text NOT NULL,
    kind             text NOT NULL,        -- reminder, escalation, timeout
    gate             text NOT NULL,
    level            integer NOT NULL,
    reviewer_group   text NOT NULL,
    message          text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    delivery_error   text
);
CREATE INDEX notifications_case_id ON notifications (case_id);

-- `hitl check` probes: proof that a worker picked up a workflow and wrote through the schema.
CREATE TABLE stack_checks (
    id              bigserial PRIMARY KEY,
    check_id        text NOT NULL UNIQUE,
    workflow_id     text NOT NULL,
    worker_identity text NOT NULL,
    checked_at      timestamptz NOT NULL DEFAULT now()
);
