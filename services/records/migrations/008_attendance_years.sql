-- The attendance summary per student and school year, written in the same transaction as
-- the marks (services/records/summary.py); it replaces the faust table and its changelog.
-- Filled from the attendance rows already stored, so an existing database carries on.
CREATE TABLE attendance_years (
    district_id   text    NOT NULL,
    student_key   text    NOT NULL,
    school_year   int     NOT NULL,
    days_marked   int     NOT NULL,  -- days with a daily mark
    days_absent   int     NOT NULL,  -- days whose daily mark says absent
    chronic_since date,              -- the day the chronic-absence line was crossed; NULL under it
    PRIMARY KEY (district_id, student_key, school_year)
);
ALTER TABLE attendance_years ENABLE ROW LEVEL SECURITY;
ALTER TABLE attendance_years FORCE ROW LEVEL SECURITY;
CREATE POLICY district_isolation ON attendance_years
    USING (district_id = current_setting('homeroom.district_id', true))
    WITH CHECK (district_id = current_setting('homeroom.district_id', true));
GRANT SELECT, INSERT, UPDATE, DELETE ON attendance_years TO homeroom_records_app;

-- FORCE'd policies bind the owner too, and the fill reads every district: lift FORCE for the
-- fill (inside this migration's transaction) and put it back.
ALTER TABLE attendance NO FORCE ROW LEVEL SECURITY;
ALTER TABLE attendance_years NO FORCE ROW LEVEL SECURITY;
ALTER TABLE chronic_absence NO FORCE ROW LEVEL SECURITY;
INSERT INTO attendance_years (district_id, student_key, school_year, days_marked, days_absent, chronic_since)
SELECT district_id, student_key,
       CASE WHEN extract(month FROM day) >= 7 THEN extract(year FROM day) ELSE extract(year FROM day) - 1 END::int,
       count(*), count(*) FILTER (WHERE category = 'absent'), NULL
FROM attendance WHERE period = ''
GROUP BY 1, 2, 3;
UPDATE attendance_years y SET chronic_since = c.as_of_date
FROM chronic_absence c
WHERE c.district_id = y.district_id AND c.student_key = y.student_key AND c.school_year = y.school_year AND c.chronic;
ALTER TABLE attendance FORCE ROW LEVEL SECURITY;
ALTER TABLE attendance_years FORCE ROW LEVEL SECURITY;
ALTER TABLE chronic_absence FORCE ROW LEVEL SECURITY;
