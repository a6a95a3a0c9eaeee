-- Checkpoints (c2sp.org/tlog-checkpoint) cosigned by a witness: the note as served, with
-- the witness's cosignature line. Append-only like the log itself. Id, size and root first
-- (homeroom_tree_states, kernel 005).
SELECT homeroom_tree_states('checkpoints', $columns$
    note         text        NOT NULL,
    witness      text        NOT NULL,
    cosigned_at  bigint      NOT NULL,  -- the cosignature's timestamp (POSIX seconds)
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp()
$columns$);
CREATE INDEX IF NOT EXISTS checkpoints_witness ON checkpoints (witness, size);
SELECT homeroom_append_only('checkpoints');
