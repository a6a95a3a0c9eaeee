-- Per-subject data keys, wrapped under the district KEK (homeroom/crypto.py), in the keys
-- database. Idempotent: databases made before numbered kernel migrations already hold it.
CREATE TABLE IF NOT EXISTS data_keys (
    district_id  text        NOT NULL,
    scope        text        NOT NULL CHECK (scope IN ('student', 'agreement')),
    subject      text        NOT NULL,
    kek_version  int,
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    PRIMARY KEY (district_id, scope, subject),
    -- a row is either a live wrapped key or a tombstone, never half of each
    CONSTRAINT data_keys_live_or_tombstone CHECK (
        (destroyed_at IS NULL AND kek_version IS NOT NULL AND wrapped IS NOT NULL)
        OR (destroyed_at IS NOT NULL AND kek_version IS NULL AND wrapped IS NULL)
    )
);
