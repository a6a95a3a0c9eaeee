-- Records: each student's current record per district.
--
-- District isolation is enforced by PostgreSQL as well as by the API: every table that
-- holds a student's data has ROW LEVEL SECURITY, FORCE'd so that even the owner obeys it,
-- keyed on the transaction-local setting `homeroom.district_id`. The service reads and
-- writes student data only as the non-owner role `homeroom_records_app` (SET LOCAL ROLE
-- in each transaction, see store.district_tx), so a query that forgets its WHERE clause
-- still sees one district's rows and no other's. With the setting unset, no rows at all.
--
-- PII values are stored exactly as sealed (homeroom.crypto), in bytea; nothing here is
-- ever decrypted into the database.

DO $$
BEGIN
    -- Cluster-wide: another records database (or an operator, where the migrating role
    -- may not CREATE ROLE) may have created it already.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'homeroom_records_app') THEN
        CREATE ROLE homeroom_records_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created concurrently
END
$$;

DO $$
BEGIN
    -- The connecting role must be allowed to SET ROLE to the app role (a no-op for a superuser).
    EXECUTE format('GRANT homeroom_records_app TO %I', current_user);
EXCEPTION WHEN others THEN
    NULL;
END
$$;

-- Schools per district (organization.v1). Not student data: no RLS. Keyed (district_id,
-- school_id), with deleted and updated_at after these (homeroom_district_entity, kernel 004).
SELECT homeroom_district_entity('schools', 'school_id', $columns$
    name        text        NOT NULL DEFAULT '',
    nces_id     text        NOT NULL DEFAULT '',
    grades      text[]      NOT NULL DEFAULT '{}'
$columns$);

-- Which districts hold a record for a student key: keys and district ids only, no record
-- data. Lets a parent's or vendor's read find the owning district(s) of a key.
CREATE TABLE student_index (
    student_key text NOT NULL,
    district_id text NOT NULL,
    PRIMARY KEY (student_key, district_id)
);

-- Agreements the consent service has ended: a second, local stop for vendor reads.
CREATE TABLE ended_agreements (
    agreement_id text        PRIMARY KEY,
    version      int         NOT NULL DEFAULT 0,
    ended_on     text        NOT NULL DEFAULT '',
    reason       text        NOT NULL DEFAULT '',
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE students (
    district_id        text        NOT NULL,
    student_key        text        NOT NULL,
    local_id_hash      text        NOT NULL DEFAULT '',
    plain_elements     jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- non-PII elements, e.g. grade level
    program_flags      bytea,                                     -- sealed JSON list (disability-sensitive)
    registered         boolean     NOT NULL DEFAULT false,
    directory_opt_out  boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key)
);
CREATE INDEX students_updated ON students (district_id, updated_at);

-- Sealed identity and demographic elements, one row per element, stored as received.
CREATE TABLE student_elements (
    district_id text        NOT NULL,
    student_key text        NOT NULL,
    element     text        NOT NULL,
    sealed      bytea       NOT NULL,
    source      text        NOT NULL DEFAULT 'ingest',
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key, element)
);

CREATE TABLE enrollments (
    district_id text        NOT NULL,
    student_key text        NOT NULL,
    school_id   text        NOT NULL,
    entry_date  date        NOT NULL,
    exit_date   date,
    exit_code   text        NOT NULL DEFAULT '',
    grade_level text        NOT NULL DEFAULT '',
    entry_type  text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key, school_id, entry_date),
    CHECK (exit_date IS NULL OR exit_date >= entry_date)
);
CREATE INDEX enrollments_school ON enrollments (district_id, school_id);

CREATE TABLE attendance (
    district_id text        NOT NULL,
    student_key text        NOT NULL,
    day         date        NOT NULL,
    period      text        NOT NULL DEFAULT '',  -- '' for daily attendance
    school_id   text        NOT NULL DEFAULT '',
    category    text        NOT NULL,             -- present, absent, tardy, early_departure
    excused     boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key, day, period)
);

CREATE TABLE suspensions (
    district_id text        NOT NULL,
    student_key text        NOT NULL,
    start_date  date        NOT NULL,
    end_date    date        NOT NULL,
    in_school   boolean     NOT NULL DEFAULT false,
    school_id   text        NOT NULL DEFAULT '',
    PRIMARY KEY (district_id, student_key, start_date),
    CHECK (end_date >= start_date)
);

-- FERPA 99.20 amendment requests and their outcome.
CREATE TABLE amendments (
    id              uuid        PRIMARY KEY,
    district_id     text        NOT NULL,
    student_key     text        NOT NULL,
    element         text        NOT NULL,
    requested_value bytea,                  -- sealed under the element
    request_reason  bytea       NOT NULL,   -- sealed (record.amendment_request)
    requested_by    text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',  -- pending, accepted, refused
    outcome_reason  text        NOT NULL DEFAULT '',
    decided_by      text        NOT NULL DEFAULT '',
    decided_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX amendments_student ON amendments (district_id, student_key);

-- FERPA 99.21 parent statements, kept with the record after a refused amendment.
CREATE TABLE parent_statements (
    id           uuid        PRIMARY KEY,
    amendment_id uuid        NOT NULL UNIQUE REFERENCES amendments (id),
    district_id  text        NOT NULL,
    student_key  text        NOT NULL,
    statement    bytea       NOT NULL,  -- sealed (record.parent_statement)
    filed_by     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Records delivered by a transfer from another district, sealed under this district's keys.
CREATE TABLE transfer_deliveries (
    case_id          text        PRIMARY KEY,
    district_id      text        NOT NULL,  -- the receiving district
    student_key      text        NOT NULL,
    from_district_id text        NOT NULL,
    to_school_id     text        NOT NULL DEFAULT '',
    package          bytea       NOT NULL,  -- sealed JSON (record.transfer_package)
    elements         text[]      NOT NULL DEFAULT '{}',
    delivered_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per release of a student's record outside the owning district's staff,
-- written in the same transaction as its disclosure.v1 event.
CREATE TABLE read_log (
    id              bigserial   PRIMARY KEY,
    district_id     text        NOT NULL,
    student_key     text        NOT NULL,
    requester_role  text        NOT NULL,
    requester       text        NOT NULL,
    channel         text        NOT NULL,
    elements        text[]      NOT NULL,
    decision_id     text        NOT NULL DEFAULT '',
    agreement_id    text        NOT NULL DEFAULT '',
    disclosure_id   text        NOT NULL,
    read_at         timestamptz NOT NULL DEFAULT clock_timestamp()
);

SELECT homeroom_district_isolation(t, 'SELECT, INSERT, UPDATE, DELETE', 'homeroom_records_app')
FROM unnest(ARRAY['students', 'student_elements', 'enrollments', 'attendance', 'suspensions', 'amendments', 'parent_statements', 'transfer_deliveries', 'read_log']) AS t;

GRANT SELECT, INSERT, UPDATE ON schools, student_index, ended_agreements TO homeroom_records_app;
GRANT USAGE ON SEQUENCE read_log_id_seq TO homeroom_records_app;
-- Events written in the app role's transactions (disclosures, consumer follow-ons).
GRANT SELECT, INSERT ON outbox TO homeroom_records_app;
GRANT USAGE ON SEQUENCE outbox_id_seq TO homeroom_records_app;
