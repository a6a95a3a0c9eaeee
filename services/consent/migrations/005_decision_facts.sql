-- The decision point keeps the facts it decides on in memory (services/consent/facts.py).
-- Every statement that changes them bumps one counter once and names what it changed, in
-- the writer's own transaction (statement triggers, so every writer is covered: API, CLI
-- import, expiry check, another instance, a bulk COPY). A decision is logged only while the
-- counter still holds the value its facts were read at, so no answer is ever given on facts
-- older than its log row.
CREATE TABLE fact_version (
    one             boolean PRIMARY KEY DEFAULT true CHECK (one),
    version         bigint  NOT NULL,
    pruned_through  bigint  NOT NULL DEFAULT 0  -- changes up to here are forgotten
);
INSERT INTO fact_version (one, version) VALUES (true, 0);

CREATE TABLE fact_changes (
    version      bigint      NOT NULL,
    agreement_id text,       -- agreement_versions, agreement_ends
    student_key  text,       -- directory_opt_outs, written_consents
    district_id  text,       -- ... and transfer_exclusions
    changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fact_changes_version ON fact_changes (version);

CREATE FUNCTION consent_facts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    UPDATE fact_version SET version = version + 1 RETURNING version INTO v;
    IF TG_TABLE_NAME IN ('agreement_versions', 'agreement_ends') THEN
        INSERT INTO fact_changes (version, agreement_id) SELECT DISTINCT v, agreement_id FROM changed;
    ELSIF TG_TABLE_NAME = 'transfer_exclusions' THEN
        INSERT INTO fact_changes (version, district_id) SELECT DISTINCT v, district_id FROM changed;
    ELSE
        INSERT INTO fact_changes (version, student_key, district_id)
        SELECT DISTINCT v, student_key, district_id FROM changed;
    END IF;
    RETURN NULL;
END
$$;

SELECT homeroom_watch_statements(t, 'facts', 'consent_facts_changed', ARRAY['INSERT', 'UPDATE', 'DELETE'])
FROM unnest(ARRAY['agreement_versions', 'agreement_ends', 'directory_opt_outs', 'written_consents',
                  'transfer_exclusions']) AS t;
