-- The decision point keeps the facts it decides on in memory (services/consent/facts.py).
-- Every change to them bumps one counter and names what changed, in the writer's own
-- transaction (triggers, so every writer is covered: API, CLI import, expiry check, another
-- instance). A decision is logged only while the counter still holds the value its facts
-- were read at, so no answer is ever given on facts older than its log row.
CREATE TABLE fact_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint  NOT NULL
);
INSERT INTO fact_version VALUES (true, 0);

CREATE TABLE fact_changes (
    version      bigint      PRIMARY KEY,
    agreement_id text,       -- agreement_versions, agreement_ends
    student_key  text,       -- directory_opt_outs, written_consents
    district_id  text,       -- ... and transfer_exclusions
    changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fact_changes_at ON fact_changes (changed_at);

CREATE FUNCTION consent_fact_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
    agreement text;
    student text;
    district text;
BEGIN
    IF TG_TABLE_NAME IN ('agreement_versions', 'agreement_ends') THEN
        agreement := CASE WHEN TG_OP = 'DELETE' THEN OLD.agreement_id ELSE NEW.agreement_id END;
    ELSIF TG_TABLE_NAME = 'transfer_exclusions' THEN
        district := CASE WHEN TG_OP = 'DELETE' THEN OLD.district_id ELSE NEW.district_id END;
    ELSE
        student := CASE WHEN TG_OP = 'DELETE' THEN OLD.student_key ELSE NEW.student_key END;
        district := CASE WHEN TG_OP = 'DELETE' THEN OLD.district_id ELSE NEW.district_id END;
    END IF;
    UPDATE fact_version SET version = version + 1 RETURNING version INTO v;
    INSERT INTO fact_changes (version, agreement_id, student_key, district_id) VALUES (v, agreement, student, district);
    RETURN NULL;
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['agreement_versions', 'agreement_ends', 'directory_opt_outs', 'written_consents',
                             'transfer_exclusions'] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION consent_fact_changed()',
            t || '_fact_changed', t);
    END LOOP;
END
$$;
