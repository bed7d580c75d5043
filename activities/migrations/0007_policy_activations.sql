-- Which version of each kind's policy is in force (gates/policy_activation.py): one row per
-- activation, the newest row of a kind is the active one. A policy file is a proposal; only a row
-- here puts it in force. The row keeps the file's full text and its digest, so an edited or deleted
-- file changes nothing, and a case's trace (which names the ref) can be tied to the exact text.
--
-- change_id is the PolicyChange workflow's ID: an activity retried after its insert finds its row
-- (UNIQUE; NULL for the bootstrap activation, which is serialised by an advisory lock instead).

CREATE TABLE policy_activations (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL,
    policy_ref   text NOT NULL CHECK (policy_ref ~ '^[a-z][a-z0-9_]*_v[0-9]+_[0-9]+$'),
    version      text NOT NULL CHECK (version ~ '^[0-9]+\.[0-9]+$'),
    digest       text NOT NULL CHECK (digest ~ '^sha256:[0-9a-f]{64}$'),
    policy_text  text NOT NULL,
    activated_at timestamptz NOT NULL DEFAULT now(),
    approved_by  text[] NOT NULL DEFAULT '{}',
    reason       text NOT NULL,
    change_id    text UNIQUE,
    trace_id     text
);

-- The active version of a kind, and its history newest first.
CREATE INDEX policy_activations_by_kind ON policy_activations (kind, id DESC);

-- The history of activations is history: a new activation is a new row, never an edit. Same
-- refusal as the audit log (0004), for everyone, under session_replication_role = replica too.
CREATE FUNCTION policy_activations_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'policy_activations is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'an activation is never changed or removed; activate another version instead';
END
$$;

CREATE TRIGGER policy_activations_append_only
    BEFORE UPDATE OR DELETE ON policy_activations
    FOR EACH ROW EXECUTE FUNCTION policy_activations_refuse_change();
CREATE TRIGGER policy_activations_no_truncate
    BEFORE TRUNCATE ON policy_activations
    FOR EACH STATEMENT EXECUTE FUNCTION policy_activations_refuse_change();
ALTER TABLE policy_activations ENABLE ALWAYS TRIGGER policy_activations_append_only;
ALTER TABLE policy_activations ENABLE ALWAYS TRIGGER policy_activations_no_truncate;

REVOKE UPDATE, DELETE, TRUNCATE ON policy_activations FROM PUBLIC;

-- The worker's role (0004) activates and reads; nothing more on this table.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hitl_audit_writer') THEN
        GRANT INSERT, SELECT ON policy_activations TO hitl_audit_writer;
        GRANT USAGE ON SEQUENCE policy_activations_id_seq TO hitl_audit_writer;
    END IF;
END
$$;
