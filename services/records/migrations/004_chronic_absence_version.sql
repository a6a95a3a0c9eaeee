-- The chronic-absence flag is now written by the attendance summary table (faust) only
-- when a student crosses the line or falls back under it: keep which school year and
-- source offset it reflects, so a later write never loses to an earlier one.
ALTER TABLE chronic_absence ADD COLUMN school_year int NOT NULL DEFAULT 0;
ALTER TABLE chronic_absence ADD COLUMN version bigint NOT NULL DEFAULT -1;
