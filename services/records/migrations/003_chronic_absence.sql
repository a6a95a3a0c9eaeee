-- Chronic absence (seed 000: early support): set when a student's absent days reach the
-- configured share of recorded school days, cleared when they fall below it again.
CREATE TABLE chronic_absence (
    district_id   text        NOT NULL,
    student_key   text        NOT NULL,
    chronic       boolean     NOT NULL,
    days_enrolled int         NOT NULL,
    days_absent   int         NOT NULL,
    absence_rate  double precision NOT NULL,
    as_of_date    date        NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, student_key)
);
SELECT homeroom_district_isolation('chronic_absence', 'SELECT, INSERT, UPDATE, DELETE', 'homeroom_records_app');
