-- The statewide tally, the school calendars and names it counts with, and published snapshots.

-- One row per (school year, district, school) per partition of the streaming tally: the sums
-- over the students that partition holds (services/reports/tallies.py). A snapshot adds the
-- partitions up. A process writes the partitions it holds after every batch; after a
-- rebalance the new holder replaces them, and `generation` keeps a former holder's late
-- write from undoing that.
CREATE TABLE school_tallies (
    school_year  int         NOT NULL,
    district_id  text        NOT NULL,
    school_id    text        NOT NULL,
    partition    int         NOT NULL,
    generation   int         NOT NULL,
    students     int         NOT NULL CHECK (students >= 0),
    tally        jsonb       NOT NULL,
    newest_event timestamptz,            -- the latest event time counted in this row
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (school_year, district_id, school_id, partition)
);
CREATE INDEX school_tallies_partition ON school_tallies (partition);

-- calendar.v1: each school year's instructional days (a school calendar wins over roster terms).
CREATE SEQUENCE calendar_versions;
CREATE TABLE calendars (
    district_id  text        NOT NULL,
    school_id    text        NOT NULL,
    school_year  int         NOT NULL,
    source       text        NOT NULL CHECK (source IN ('calendar', 'terms')),
    days         date[]      NOT NULL,
    event_id     text        NOT NULL,
    version      bigint      NOT NULL DEFAULT nextval('calendar_versions'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (district_id, school_id, school_year, source)
);
CREATE INDEX calendars_version ON calendars (version);

-- organization.v1: school names, for the tables.
CREATE TABLE schools (
    district_id  text        NOT NULL,
    school_id    text        NOT NULL,
    name         text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (district_id, school_id)
);

-- Published snapshots: what the public got, under which rules, asked for by whom. Never
-- changed or deleted: a release is history (each is in the audit log too).
CREATE TABLE snapshots (
    snapshot_id     uuid        PRIMARY KEY,
    school_year     int         NOT NULL,
    version         int         NOT NULL CHECK (version >= 1),
    period_start    date        NOT NULL,
    period_end      date        NOT NULL,
    published_at    timestamptz NOT NULL,
    requested_by    jsonb       NOT NULL,
    purpose         text        NOT NULL,
    rules           jsonb       NOT NULL,
    cells           int         NOT NULL,
    fewer_than      int         NOT NULL,
    withheld        int         NOT NULL,
    content_sha256  text        NOT NULL,
    document        bytea       NOT NULL,   -- the published JSON, gzip
    UNIQUE (school_year, version)
);
SELECT homeroom_append_only('snapshots');
