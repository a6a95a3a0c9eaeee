-- The log's tables are append-only by the kernel's rule too: the migration runner grants
-- the service's login role only SELECT and INSERT on them (homeroom/storage.py).
SELECT homeroom_append_only(t) FROM unnest(ARRAY['entries', 'tree_nodes', 'tree_heads']) AS t;
