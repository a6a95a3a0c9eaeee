-- An Idempotency-Key belongs to the person who sent it: another user's same key is a new
-- submission, never the first one's report (issue 17, item 7). The body's SHA-256 decides
-- whether a repeat is the same request (200, the report) or another one (422).
DROP INDEX IF EXISTS submissions_idempotency;
CREATE UNIQUE INDEX IF NOT EXISTS submissions_idempotency_by_principal
    ON submissions (district_id, submitted_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
