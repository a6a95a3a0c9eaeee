-- Crypto-shredding (keys.v1 data_keys_destroyed): the student's rows are deleted and a
-- tombstone kept, so reads answer "destroyed" rather than "not found" or partial data.
ALTER TABLE students ADD COLUMN destroyed_at timestamptz;
ALTER TABLE students ADD COLUMN destroyed_reason text NOT NULL DEFAULT '';
