-- One truth per case, precedent only from verified humans.
--
-- A case ID has one current trace: its newest one (seeded history aside). A reset of a decided case
-- keeps the decision key (case id + first run id) and changes the run; a re-run under the same ID
-- changes both. Either way, when the new run records its decision the new trace is a new row that
-- `supersedes` the old (record_decision, activities/case_activities.py), the old trace's precedent
-- is retracted and the case's audit chain gets a trace_superseded event, all in one transaction.
-- A retry of the same run finds its own row: one row per (decision_key, run_id).

ALTER TABLE decision_traces DROP CONSTRAINT decision_traces_decision_key_key;
ALTER TABLE decision_traces ADD CONSTRAINT decision_traces_one_per_run UNIQUE (decision_key, run_id);
-- The same unique index leads with decision_key: it serves lookups by key too.

ALTER TABLE decision_traces ADD COLUMN supersedes bigint REFERENCES decision_traces (id);
-- A trace is superseded at most once: the truths of a case form a line, never a fork.
CREATE UNIQUE INDEX decision_traces_superseded_once ON decision_traces (supersedes) WHERE supersedes IS NOT NULL;
ALTER TABLE decision_traces ADD CONSTRAINT decision_traces_supersedes_an_older_trace CHECK (supersedes < id);

-- A precedent names its trace (decision_trace_id) and its chain position: the global_seq of its
-- trace's trace_recorded row, stored here when the precedent is written (NULL for seeded history,
-- which is not in the chain). A retracted precedent is kept, and no longer cited.
ALTER TABLE precedents
    ADD COLUMN trace_global_seq   bigint CHECK (trace_global_seq >= 1),
    ADD COLUMN retracted_at       timestamptz,
    ADD COLUMN retracted_by       text,
    ADD COLUMN retracted_identity text CHECK (retracted_identity IN ('verified', 'asserted')),
    ADD COLUMN retracted_reason   text,
    ADD CONSTRAINT precedents_retraction_whole
        CHECK ((retracted_at IS NULL) = (retracted_reason IS NULL) AND (retracted_at IS NULL) = (retracted_by IS NULL));

-- Precedents written before this migration from what no longer deserves it are retracted, not
-- deleted: decisions no verified human made (policy, timeouts, operators, asserted identities) ...
UPDATE precedents p
   SET retracted_at = now(), retracted_by = 'migration 0005',
       retracted_reason = 'not a decision by a verified human (only those are precedent since migration 0005)'
  FROM decision_traces t
 WHERE t.id = p.decision_trace_id AND t.decided_via <> 'seed'
   AND NOT (t.decided_via IN ('update', 'signal') AND t.trace #>> '{decided_identity,mode}' = 'verified');

-- ... and those of a case's older traces, which a later run of the same case ID recorded over.
UPDATE precedents p
   SET retracted_at = now(), retracted_by = 'migration 0005',
       retracted_reason = 'a later trace of the same case ID supersedes it (recorded before migration 0005)'
  FROM decision_traces t
 WHERE t.id = p.decision_trace_id AND t.decided_via <> 'seed' AND p.retracted_at IS NULL
   AND EXISTS (SELECT FROM decision_traces later
                WHERE later.case_id = t.case_id AND later.id > t.id AND later.decided_via <> 'seed');

CREATE INDEX precedents_current ON precedents (kind, amount_band) WHERE retracted_at IS NULL;
DROP INDEX precedents_lookup;
