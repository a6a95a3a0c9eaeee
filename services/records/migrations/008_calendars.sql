-- School calendars (calendar.v1) and days enrolled. A calendar is not student data: no RLS
-- (like `schools`). The chronic-absence row now says whether every school the student
-- attended that year has a calendar; without one nothing is counted and no flag is raised.
CREATE TABLE calendars (
    district_id         text        NOT NULL,
    school_id           text        NOT NULL,
    school_year         int         NOT NULL,   -- the year it starts in: 2021 for 2021-2022
    source              text        NOT NULL CHECK (source IN ('calendar', 'terms')),
    instructional_days  date[]      NOT NULL,
    terms               jsonb       NOT NULL DEFAULT '[]'::jsonb,
    days_off            date[]      NOT NULL DEFAULT '{}',
    source_format       text        NOT NULL DEFAULT '',
    event_id            text        NOT NULL DEFAULT '',
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, school_id, school_year, source)
);
GRANT SELECT, INSERT, UPDATE ON calendars TO homeroom_records_app;

-- Students whose days enrolled or absences may have changed: the absence reviewer counts them
-- again (services/records/absence.py). Keys only.
CREATE TABLE absence_reviews (
    district_id text        NOT NULL,
    student_key text        NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key)
);
CREATE INDEX absence_reviews_queued ON absence_reviews (district_id, queued_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON absence_reviews TO homeroom_records_app;

ALTER TABLE chronic_absence ADD COLUMN calendar_known boolean NOT NULL DEFAULT false;
ALTER TABLE chronic_absence ADD COLUMN missing_calendars text[] NOT NULL DEFAULT '{}';
ALTER TABLE chronic_absence ALTER COLUMN absence_rate DROP NOT NULL;
