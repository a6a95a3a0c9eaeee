-- Row-level security for a table that holds districts' rows: every service that keeps such a
-- table calls this once per table from its migration, so the policy a district's isolation
-- rests on is written once. FORCE'd so that even the table's owner obeys it; a session sees and
-- writes only the rows of the district it entered (the service's store sets homeroom.district_id
-- per transaction, e.g. services/records/store.py enter_district), and none when it entered none.
CREATE OR REPLACE FUNCTION homeroom_district_isolation(tbl text, privileges text, grantee text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format(
        'CREATE POLICY district_isolation ON %I USING (district_id = current_setting(''homeroom.district_id'', true))'
        ' WITH CHECK (district_id = current_setting(''homeroom.district_id'', true))', tbl);
    -- privileges is a list of privilege keywords from a migration file, never from input
    EXECUTE format('GRANT %s ON %I TO %I', privileges, tbl, grantee);
END
$$;
