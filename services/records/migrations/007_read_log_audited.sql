-- Reconciliation with the audit log: a read-log row's disclosure seen in audit's log is
-- marked here (ids only, no student data); a row older than the grace period and not
-- marked is a release without its record (homeroom_records_disclosures_unaudited).
CREATE TABLE read_log_audited (
    disclosure_id text        PRIMARY KEY,
    district_id   text        NOT NULL,
    audited_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
SELECT homeroom_append_only('read_log_audited');
CREATE INDEX read_log_read_at ON read_log (district_id, read_at);
