-- Every release's read-log row stays as written: the service's login may only add rows
-- (the reconciliation with the audit log reads it; homeroom/storage.py grants).
SELECT homeroom_append_only('read_log');
