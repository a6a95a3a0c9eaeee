-- Ingest: submissions and their reports, the organisation registry, students and
-- enrollment windows known per district (pseudonymised), and the records already taken.

CREATE TABLE IF NOT EXISTS submissions (
    id              uuid PRIMARY KEY,
    district_id     text NOT NULL,
    format          text NOT NULL,            -- batch, edfi-json, edfi-xml, oneroster
    resource        text,                     -- Ed-Fi resource name (edfi-json)
    file_name       text NOT NULL,
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL CHECK (status IN ('received', 'processing', 'completed', 'failed', 'held')),
    submitted_by    text NOT NULL,
    idempotency_key text,
    bytes           bigint NOT NULL DEFAULT 0,
    sha256          text,
    upload_path     text,                     -- the stored upload while it is needed
    bytes_read      bigint NOT NULL DEFAULT 0,
    records_read    bigint NOT NULL DEFAULT 0,
    accepted        bigint NOT NULL DEFAULT 0,
    rejected        bigint NOT NULL DEFAULT 0,
    warned          bigint NOT NULL DEFAULT 0,
    unchanged       bigint NOT NULL DEFAULT 0,  -- accepted records already taken earlier (no new event)
    events          bigint NOT NULL DEFAULT 0,
    problems_dropped bigint NOT NULL DEFAULT 0, -- problems beyond the stored maximum (still counted)
    progress        real NOT NULL DEFAULT 0,  -- 0..1, by bytes of the upload read
    held_schools    jsonb,
    error           text,
    confirmed_by    text,
    confirmed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS submissions_idempotency
    ON submissions (district_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS submissions_by_district ON submissions (district_id, created_at DESC);

-- One row per refused record or warning. Never the value: only its class.
CREATE TABLE IF NOT EXISTS submission_problems (
    submission_id uuid NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('error', 'warning')),
    file          text NOT NULL,
    line          bigint NOT NULL,
    field         text NOT NULL,
    value_class   text NOT NULL,
    rule          text NOT NULL,
    message       text NOT NULL,
    PRIMARY KEY (submission_id, seq)
);

-- The organisation registry: which district owns each school (and the ids under which a
-- district itself appears in uploads: an Ed-Fi LEA id, a OneRoster district sourcedId).
CREATE TABLE IF NOT EXISTS organizations (
    org_id        text PRIMARY KEY,
    district_id   text NOT NULL,
    org_type      text NOT NULL CHECK (org_type IN ('school', 'district')),
    name          text,
    registered_by text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS organizations_by_district ON organizations (district_id);

-- Students known per district: pseudonym of the upload's student id -> student key.
CREATE TABLE IF NOT EXISTS students (
    district_id text NOT NULL,
    ref_hash    text NOT NULL,
    student_key text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (district_id, ref_hash)
);

-- Enrollment windows on record (for attendance and withdrawals sent in later submissions).
CREATE TABLE IF NOT EXISTS enrollment_windows (
    id          bigserial PRIMARY KEY,
    district_id text NOT NULL,
    ref_hash    text NOT NULL,
    school_id   text NOT NULL,
    entry_date  date,
    exit_date   date
);
CREATE INDEX IF NOT EXISTS enrollment_windows_by_student ON enrollment_windows (district_id, ref_hash, school_id);
CREATE INDEX IF NOT EXISTS enrollment_windows_open ON enrollment_windows (district_id, school_id) WHERE exit_date IS NULL;

-- Records already taken: a resubmitted record with the same content makes no new event.
CREATE TABLE IF NOT EXISTS ingested_records (
    district_id  text NOT NULL,
    record_hash  text NOT NULL,   -- keyed pseudonym of the record's source id
    content_hash text NOT NULL,   -- hash of the keyed record id and the content
    submission_id uuid NOT NULL,
    PRIMARY KEY (district_id, record_hash)
);
