-- The absence reviewer's daily sweep (every student still enrolled queued for a recount, since
-- each school day adds to days enrolled) is done once per district and day, whichever process
-- does it: the day it was last done is kept here. Before, every records process swept every
-- district each time it started (a restart or a second instance counted the whole district
-- again). District ids and dates only: no RLS (like `schools`).
CREATE TABLE absence_sweeps (
    district_id text PRIMARY KEY,
    swept_on    date NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON absence_sweeps TO homeroom_records_app;
