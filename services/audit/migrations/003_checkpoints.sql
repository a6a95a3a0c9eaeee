-- Checkpoints (c2sp.org/tlog-checkpoint) cosigned by a witness: the note as served, with
-- the witness's cosignature line. Append-only like the log itself.
CREATE TABLE IF NOT EXISTS checkpoints (
    id           bigserial   PRIMARY KEY,
    size         bigint      NOT NULL CHECK (size >= 0),
    root         bytea       NOT NULL CHECK (length(root) = 32),
    note         text        NOT NULL,
    witness      text        NOT NULL,
    cosigned_at  bigint      NOT NULL,  -- the cosignature's timestamp (POSIX seconds)
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS checkpoints_witness ON checkpoints (witness, size);
SELECT homeroom_append_only('checkpoints');
