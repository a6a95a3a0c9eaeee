-- Each student's value (services/reports/tallies.py: StudentTally as JSON, with the offset of
-- the last event applied per topic), written in the same transaction as the school rows it
-- changed. It is what a process reloads when it is given a partition, so the tally no longer
-- depends on replaying a faust changelog to the broker's reported end (issue 22: Tansu's
-- high-water mark can trail the log, and recovery stopped short of students).
CREATE TABLE student_tallies (
    partition   int         NOT NULL,
    student_key text        NOT NULL,
    generation  int         NOT NULL,
    value       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, student_key)
);
