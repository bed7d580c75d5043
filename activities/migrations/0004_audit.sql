-- The audit log (gates/audit.py defines the rows and their hashes): every gate event is one row,
-- written once per event_key, in two hash chains: one per case (case_seq, case_prev -> entry_hash)
-- and one over every row (global_seq, global_prev -> row_hash), so deleting a whole case breaks the
-- global chain too. Rows are numbered by the appender under an advisory lock (activities/store/
-- audit.py), so global_seq has no gaps and the chain no forks.
--
-- The body is kept as its RFC 8785 canonical text, not jsonb: jsonb rewrites numbers and key order,
-- and verification must hash exactly the bytes that were hashed when the row was written.
--
-- (case_id, case_seq)'s unique index also serves lookups by case_id (its leading column): no
-- separate index, one less to update per event.

CREATE TABLE audit_events (
    global_seq     bigint PRIMARY KEY CHECK (global_seq >= 1),
    case_id        text NOT NULL,
    case_seq       bigint NOT NULL CHECK (case_seq >= 1),
    event_key      text NOT NULL UNIQUE,
    kind           text NOT NULL,
    at             timestamptz NOT NULL,
    body_canonical text NOT NULL,
    case_prev      text NOT NULL CHECK (case_prev ~ '^[0-9a-f]{64}$'),
    entry_hash     text NOT NULL CHECK (entry_hash ~ '^[0-9a-f]{64}$'),
    global_prev    text NOT NULL CHECK (global_prev ~ '^[0-9a-f]{64}$'),
    row_hash       text NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$'),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, case_seq)
);

-- Append-only for everyone, the owner and superusers included: changing a row means disabling this
-- trigger first (DDL, which needs ownership or superuser), and what that does not stop, the hash
-- chains and the signed checkpoints outside the database catch (`hitl audit verify`).
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit rows are never changed or removed; a correction is a new event';
END
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
-- ALWAYS: the triggers fire under session_replication_role = replica too, which would otherwise
-- skip them without any DDL.
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_append_only;
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_no_truncate;

REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;

-- The role production runs the worker as a member of: it may add and read audit rows, nothing more
-- on this table. Roles are cluster-wide: another database of the cluster may have created it (even
-- at this moment), and a migrator without CREATEROLE leaves it to the administrator (README).
DO $$
BEGIN
    CREATE ROLE hitl_audit_writer NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot create role hitl_audit_writer (no CREATEROLE): create it, then GRANT INSERT, SELECT ON audit_events TO hitl_audit_writer';
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'hitl_audit_writer') THEN
        GRANT INSERT, SELECT ON audit_events TO hitl_audit_writer;
    END IF;
END
$$;

-- Where the log began: traces recorded before this migration have no trace event, so `hitl audit
-- verify` leaves them out (and says how many) rather than report each as unbound. One row, written
-- here and never changed (the same triggers refuse UPDATE, DELETE and TRUNCATE).
CREATE TABLE audit_log_origin (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    began_at      timestamptz NOT NULL DEFAULT now(),
    traces_before bigint NOT NULL
);
INSERT INTO audit_log_origin (traces_before) SELECT coalesce(max(id), 0) FROM decision_traces;
CREATE TRIGGER audit_log_origin_fixed
    BEFORE UPDATE OR DELETE ON audit_log_origin
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_log_origin_no_truncate
    BEFORE TRUNCATE ON audit_log_origin
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
ALTER TABLE audit_log_origin ENABLE ALWAYS TRIGGER audit_log_origin_fixed;
ALTER TABLE audit_log_origin ENABLE ALWAYS TRIGGER audit_log_origin_no_truncate;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON audit_log_origin FROM PUBLIC;
