-- The decisions of policy changes (the PolicyChange workflow, gates/policy_change.py): one row per run of
-- a change ID, written once with the change's gate events in the audit log. A table of its own, not
-- decision_traces: precedent lookups, agreement, what-if and `hitl report` read decision_traces as
-- cases, and a policy change must never become a case's precedent.

CREATE TABLE policy_changes (
    id           bigserial PRIMARY KEY,
    change_id    text NOT NULL CHECK (change_id ~ '^policy_change:[a-z][a-z0-9_]*_v[0-9]+_[0-9]+$'),
    run_id       text NOT NULL,
    kind         text NOT NULL,
    policy       text NOT NULL,
    outcome      text NOT NULL,
    decided_by   text NOT NULL,
    decided_via  text NOT NULL,
    reason       text NOT NULL,
    proposer     text NOT NULL,
    decided_at   timestamptz NOT NULL,
    record       jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (change_id, run_id)
);

CREATE INDEX policy_changes_by_kind ON policy_changes (kind, id DESC);

-- A record is history: never edited or removed (as the audit log, 0004, and the activations, 0007).
CREATE FUNCTION policy_changes_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'policy_changes is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'a recorded policy change is never changed or removed';
END
$$;

CREATE TRIGGER policy_changes_append_only
    BEFORE UPDATE OR DELETE ON policy_changes
    FOR EACH ROW EXECUTE FUNCTION policy_changes_refuse_change();
CREATE TRIGGER policy_changes_no_truncate
    BEFORE TRUNCATE ON policy_changes
    FOR EACH STATEMENT EXECUTE FUNCTION policy_changes_refuse_change();
ALTER TABLE policy_changes ENABLE ALWAYS TRIGGER policy_changes_append_only;
ALTER TABLE policy_changes ENABLE ALWAYS TRIGGER policy_changes_no_truncate;

REVOKE UPDATE, DELETE, TRUNCATE ON policy_changes FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hitl_audit_writer') THEN
        GRANT INSERT, SELECT ON policy_changes TO hitl_audit_writer;
        GRANT USAGE ON SEQUENCE policy_changes_id_seq TO hitl_audit_writer;
    END IF;
END
$$;
