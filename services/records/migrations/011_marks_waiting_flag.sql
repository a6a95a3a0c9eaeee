-- The waiting-marks task (services/records/application/waiting_marks.py) polls only the
-- districts that have marks waiting, not every district that ever had one: every write of a
-- waiting mark sets `waiting` and moves `version` on; the task clears `waiting` once the
-- district has no mark left, and only if `version` is still the one it read (so a mark kept
-- meanwhile, committed or not, keeps the district listed: its write holds the row until it
-- commits, and the task's clear then finds another version).
ALTER TABLE marks_waiting_districts
    ADD COLUMN waiting boolean NOT NULL DEFAULT true,
    ADD COLUMN version bigint  NOT NULL DEFAULT 0;
GRANT UPDATE ON marks_waiting_districts TO homeroom_records_app;
