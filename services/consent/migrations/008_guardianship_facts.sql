-- Guardianship links become decision facts (issue 24): the parent-inspection rule decides per
-- student AND district from the link's state there (a link a transfer carried authorises
-- nothing in the receiving district until it accepts it; a revoked link nothing at once), so
-- every statement that writes links bumps fact_version and names the (student, district) pairs,
-- like opt-outs and consents (migration 005).
SELECT homeroom_watch_statements('guardianships', 'facts', 'consent_facts_changed', ARRAY['INSERT', 'UPDATE', 'DELETE']);
CREATE INDEX guardianships_subject ON guardianships (subject);

-- Where each student was transferred (from transfer.v1 transfer_delivered): a link active in the
-- receiving district also opens the sending district's record (that district sent it there), never
-- the other way round. district_id is the sending district, so the facts trigger names its pair.
CREATE TABLE student_moves (
    student_key text NOT NULL,
    district_id text NOT NULL,
    to_district_id text NOT NULL,
    case_id text NOT NULL,
    moved_at timestamptz NOT NULL,
    PRIMARY KEY (student_key, district_id, to_district_id)
);
SELECT homeroom_watch_statements('student_moves', 'facts', 'consent_facts_changed', ARRAY['INSERT', 'DELETE']);

-- Linking codes are now kept as an HMAC under the server's secret (services/consent/guardianship.py),
-- not an unkeyed SHA-256 anyone holding the table could test guesses against. The old digests cannot
-- be converted (the codes are not kept): codes issued before this migration and not yet redeemed are
-- withdrawn, and every old digest is replaced by a random value so none stays in the table.
UPDATE linking_codes SET revoked_at = now(), revoked_by = 'migration:008_guardianship_facts'
    WHERE redeemed_at IS NULL AND revoked_at IS NULL;
UPDATE linking_codes SET code_hash = sha256(convert_to(gen_random_uuid()::text || code_id, 'UTF8'));
COMMENT ON COLUMN linking_codes.code_hash IS 'HMAC-SHA256 of the normalised code under HOMEROOM_CONSENT_LINKING_CODE_KEY';

-- FERPA 99.5: how an eligible-student code's eligibility was established (records' answer from the
-- birth date or a postsecondary enrollment, or the district's attestation where records holds neither).
ALTER TABLE linking_codes ADD COLUMN eligibility_basis text;
