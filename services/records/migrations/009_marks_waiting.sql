-- Attendance marks for a student the district has not registered yet (enrollment travels on
-- another topic, so it may simply not have arrived): kept here instead of holding up the
-- consumer's partition, applied once the student is known (services/records/application/
-- waiting_marks.py), dead-lettered after HOMEROOM_RECORDS_UNKNOWN_STUDENT_WAIT_S. A later
-- mark of the same student, day and period replaces the waiting one (as in `attendance`).
CREATE TABLE marks_waiting (
    district_id       text        NOT NULL,
    student_key       text        NOT NULL,
    day               date        NOT NULL,
    period            text        NOT NULL,
    school_id         text        NOT NULL,
    category          text        NOT NULL,
    excused           boolean     NOT NULL,
    -- where the mark came from, for its dead letter
    event_id          text        NOT NULL,
    topic             text        NOT NULL,
    "partition"       int         NOT NULL,
    "offset"          bigint      NOT NULL,
    consumer          text        NOT NULL,
    dead_letter_topic text        NOT NULL,
    waiting_since     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key, day, period)
);
SELECT homeroom_district_isolation('marks_waiting', 'SELECT, INSERT, UPDATE, DELETE', 'homeroom_records_app');

-- The districts that have had marks waiting (ids only, no RLS), so the task finds them.
CREATE TABLE marks_waiting_districts (
    district_id text PRIMARY KEY
);
GRANT SELECT, INSERT ON marks_waiting_districts TO homeroom_records_app;
