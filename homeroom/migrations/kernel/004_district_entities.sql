-- A district's entity table: one row per district and key, kept current from the district's
-- feeds and deleted by flag (records' schools, academic sessions, courses, classes, staff). The
-- convention written once: district_id and the key lead (both text), the entity's own columns
-- follow, then the deleted flag and the time of the last change, and the primary key is
-- (district_id, key). Row-level security is apart: homeroom_district_isolation, where the rows
-- are personal data.
CREATE OR REPLACE FUNCTION homeroom_district_entity(tbl text, key text, columns text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- columns is a list of column definitions from a migration file, never from input
    EXECUTE format(
        'CREATE TABLE %I (district_id text NOT NULL, %I text NOT NULL, %s,'
        ' deleted boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),'
        ' PRIMARY KEY (district_id, %I))', tbl, key, columns, key);
END
$$;
