-- A table of a transparency log's tree states (homeroom/tlog): each row a tree size and the
-- Merkle root (SHA-256) at that size, then what vouches for it (audit's signed tree heads, its
-- witness-cosigned checkpoints). The pair written once: id, size and root lead, the table's own
-- columns follow. IF NOT EXISTS like the log's other tables, whose DDL predates numbered
-- migrations.
CREATE OR REPLACE FUNCTION homeroom_tree_states(tbl text, columns text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- columns is a list of column definitions from a migration file, never from input
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I (id bigserial PRIMARY KEY, size bigint NOT NULL CHECK (size >= 0),'
        ' root bytea NOT NULL CHECK (length(root) = 32), %s)', tbl, columns);
END
$$;
