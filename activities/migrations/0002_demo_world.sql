-- The demo world: the systems of record the local connectors read (CRM, chat, vendor master,
-- finance, procurement, IAM) and the reviewer directory. Prefixed `world_` to keep them apart
-- from the product's own tables; `activities.seed.seed_demo_world` fills them once.
-- Money is in USD; fiscal years are calendar years (2026 = FY26).

-- Directory -------------------------------------------------------------------------------

CREATE TABLE world_people (
    person_id  text PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL UNIQUE,
    title      text NOT NULL,
    manager_id text REFERENCES world_people (person_id),
    active     boolean NOT NULL DEFAULT true,
    CHECK (manager_id IS DISTINCT FROM person_id)
);
CREATE INDEX world_people_manager ON world_people (manager_id);

CREATE TABLE world_reviewer_groups (
    group_id    text PRIMARY KEY,
    gate        text NOT NULL CHECK (gate IN ('finance', 'ops', 'security')),
    description text NOT NULL
);

CREATE TABLE world_group_members (
    group_id  text NOT NULL REFERENCES world_reviewer_groups (group_id),
    person_id text NOT NULL REFERENCES world_people (person_id),
    PRIMARY KEY (group_id, person_id)
);

-- CRM -------------------------------------------------------------------------------------

CREATE TABLE world_accounts (
    account_id         text PRIMARY KEY,
    name               text NOT NULL,
    tier               text NOT NULL CHECK (tier IN ('enterprise', 'growth', 'starter')),
    enterprise_arr_usd bigint NOT NULL CHECK (enterprise_arr_usd >= 0),
    contract_terms     text NOT NULL,
    account_owner      text NOT NULL REFERENCES world_people (person_id)
);

CREATE TABLE world_incidents (
    incident_id       text PRIMARY KEY,
    account_id        text NOT NULL REFERENCES world_accounts (account_id),
    severity          text NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3', 'sev4')),
    opened_at         timestamptz NOT NULL,
    resolved_at       timestamptz CHECK (resolved_at IS NULL OR resolved_at >= opened_at),
    title             text NOT NULL,
    service_impacting boolean NOT NULL
);
CREATE INDEX world_incidents_account ON world_incidents (account_id, opened_at);

-- Chat ------------------------------------------------------------------------------------

CREATE TABLE world_chat_threads (
    thread_id  text PRIMARY KEY,
    account_id text REFERENCES world_accounts (account_id),
    channel    text NOT NULL,
    title      text NOT NULL
);

-- A message may state an approval (its author is then the thread's `approval_stated_by`)
-- and may quote a customer commitment verbatim. Authors are free text: shared channels
-- carry customers' messages too.
CREATE TABLE world_chat_messages (
    message_id          bigserial PRIMARY KEY,
    thread_id           text NOT NULL REFERENCES world_chat_threads (thread_id),
    author              text NOT NULL,
    sent_at             timestamptz NOT NULL,
    text                text NOT NULL,
    states_approval     boolean NOT NULL DEFAULT false,
    customer_commitment text
);
CREATE INDEX world_chat_messages_thread ON world_chat_messages (thread_id, sent_at);

-- Vendor master, finance, procurement ----------------------------------------------------

CREATE TABLE world_vendors (
    vendor_id   text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('approved', 'onboarding', 'blocked')),
    risk_rating text NOT NULL CHECK (risk_rating IN ('low', 'medium', 'high')),
    preferred   boolean NOT NULL DEFAULT false,
    category    text NOT NULL
);

CREATE TABLE world_vendor_spend (
    vendor_id     text NOT NULL REFERENCES world_vendors (vendor_id),
    fiscal_year   integer NOT NULL CHECK (fiscal_year BETWEEN 2000 AND 2100),
    ytd_spend_usd numeric(14, 2) NOT NULL CHECK (ytd_spend_usd >= 0),
    PRIMARY KEY (vendor_id, fiscal_year)
);

CREATE TABLE world_budgets (
    cost_centre          text NOT NULL,
    fiscal_year          integer NOT NULL CHECK (fiscal_year BETWEEN 2000 AND 2100),
    budget_total_usd     numeric(14, 2) NOT NULL CHECK (budget_total_usd >= 0),
    budget_remaining_usd numeric(14, 2) NOT NULL,
    owner                text NOT NULL REFERENCES world_people (person_id),
    PRIMARY KEY (cost_centre, fiscal_year)
);

CREATE TABLE world_purchases (
    request_id   text PRIMARY KEY,
    vendor_id    text NOT NULL REFERENCES world_vendors (vendor_id),
    amount_usd   numeric(14, 2) NOT NULL CHECK (amount_usd > 0),
    category     text NOT NULL,
    purchased_at timestamptz NOT NULL
);
CREATE INDEX world_purchases_vendor ON world_purchases (vendor_id);

-- IAM -------------------------------------------------------------------------------------

CREATE TABLE world_entitlements (
    person_id   text NOT NULL REFERENCES world_people (person_id),
    system      text NOT NULL,
    entitlement text NOT NULL,
    granted_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (person_id, system, entitlement)
);

CREATE TABLE world_entitlement_owners (
    system      text NOT NULL,
    entitlement text NOT NULL,
    owner_id    text NOT NULL REFERENCES world_people (person_id),
    PRIMARY KEY (system, entitlement, owner_id)
);

CREATE TABLE world_access_exceptions (
    exception_id bigserial PRIMARY KEY,
    person_id    text NOT NULL REFERENCES world_people (person_id),
    system       text NOT NULL,
    entitlement  text NOT NULL,
    granted_at   timestamptz NOT NULL,
    reason       text NOT NULL
);
CREATE INDEX world_access_exceptions_person ON world_access_exceptions (person_id, system);
