-- The kernel's stored consumer offsets are written in the consumer's transaction, which may run as
-- the writer role.
GRANT SELECT, INSERT, UPDATE ON consumer_offsets TO homeroom_audit_writer;
