-- Issue 18: what Homeroom keeps for a recipient, per-student destruction, the security log,
-- and when a student crossed the chronic-absence line.

-- A copy of each release under an agreement (what the recipient received: the view or the
-- OneRoster page), sealed under the agreement's own data key in the district (scope
-- "agreement"), so ending the agreement shreds it. Kept for the disclosure record: what
-- exactly was sent, for a parent's or a breach's questions, until the agreement ends.
CREATE TABLE agreement_releases (
    id            bigserial   PRIMARY KEY,
    agreement_id  text        NOT NULL,
    district_id   text        NOT NULL,
    channel       text        NOT NULL,
    disclosure_ids text[]     NOT NULL,
    students      int         NOT NULL,
    payload       bytea       NOT NULL,   -- sealed JSON (record.release_copy, scope agreement)
    released_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX agreement_releases_agreement ON agreement_releases (agreement_id, district_id);

-- Every destruction of a student's data in a district: an erasure order or a retention period.
CREATE TABLE destructions (
    id           bigserial   PRIMARY KEY,
    district_id  text        NOT NULL,
    student_key  text        NOT NULL,
    scope        text        NOT NULL CHECK (scope IN ('record', 'attendance', 'discipline')),
    reason       text        NOT NULL,
    ordered_by   text        NOT NULL,
    items        int         NOT NULL,
    verified_unreadable boolean NOT NULL DEFAULT false,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);

SELECT homeroom_district_isolation(t, 'SELECT, INSERT, DELETE', 'homeroom_records_app')
FROM unnest(ARRAY['agreement_releases', 'destructions']) AS t;
GRANT USAGE ON SEQUENCE agreement_releases_id_seq, destructions_id_seq TO homeroom_records_app;

-- How long a district keeps each group of a student's data after the student's last exit.
CREATE TABLE retention_policies (
    district_id   text        NOT NULL,
    element_group text        NOT NULL CHECK (element_group IN ('record', 'attendance', 'discipline')),
    days          int         NOT NULL CHECK (days >= 0),
    set_by        text        NOT NULL,
    set_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, element_group)
);

-- The security log: refused attempts to read student data (not disclosures: nothing was released).
CREATE TABLE refused_reads (
    id              bigserial   PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    requester_role  text        NOT NULL,
    requester       text        NOT NULL,
    organization    text        NOT NULL DEFAULT '',
    agreement_id    text        NOT NULL DEFAULT '',
    method          text        NOT NULL,
    route           text        NOT NULL,
    student_key     text        NOT NULL DEFAULT '',
    district_id     text        NOT NULL DEFAULT '',
    status          int         NOT NULL,
    reason          text        NOT NULL DEFAULT ''
);
CREATE INDEX refused_reads_at ON refused_reads (at);
GRANT SELECT ON retention_policies TO homeroom_records_app;

-- When the flag last went from clear to set: the worklist says since when a student is over the line.
ALTER TABLE chronic_absence ADD COLUMN crossed_at timestamptz;
CREATE FUNCTION chronic_absence_crossed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.chronic AND (TG_OP = 'INSERT' OR NOT OLD.chronic) THEN
        NEW.crossed_at := clock_timestamp();
    ELSIF NOT NEW.chronic THEN
        NEW.crossed_at := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER chronic_absence_crossed BEFORE INSERT OR UPDATE ON chronic_absence
    FOR EACH ROW EXECUTE FUNCTION chronic_absence_crossed();

-- Notices (homeroom.notices) written in the app role's transactions: amendment decisions.
GRANT SELECT, INSERT ON notices TO homeroom_records_app;
