-- The disclosure log: entries, the Merkle tree's stored nodes, and signed tree heads.
-- Append-only twice over: the service's role may only SELECT and INSERT, and a trigger
-- refuses UPDATE, DELETE and TRUNCATE from anyone, owner included. Only a superuser who
-- disables triggers (or sets session_replication_role) can change history, and then the
-- signed receipts and tree heads say exactly what changed (`homeroom audit verify`).

CREATE TABLE IF NOT EXISTS entries (
    seq                  bigint      PRIMARY KEY CHECK (seq >= 0),  -- the leaf index, gapless from 0
    event_id             text        NOT NULL UNIQUE,               -- one entry per event, ever
    topic                text        NOT NULL,
    kind                 text        NOT NULL,                      -- the event's change, e.g. disclosure_recorded
    occurred_at          timestamptz NOT NULL,                      -- the event's time
    recorded_at_ms       bigint      NOT NULL,                      -- when appended (the receipt's time)
    requester_org        text        NOT NULL DEFAULT '',
    requester_client     text        NOT NULL DEFAULT '',
    requester_person     text        NOT NULL DEFAULT '',
    requester_role       text        NOT NULL DEFAULT '',
    recipient_org        text        NOT NULL DEFAULT '',
    recipient_client     text        NOT NULL DEFAULT '',
    recipient_person     text        NOT NULL DEFAULT '',
    recipient_role       text        NOT NULL DEFAULT '',
    student_key          text        NOT NULL DEFAULT '',           -- pseudonymous key, never a raw id
    district_id          text        NOT NULL DEFAULT '',
    elements             text[]      NOT NULL DEFAULT '{}',         -- catalogue names, never values
    purpose              text        NOT NULL DEFAULT '',
    legal_basis          text        NOT NULL DEFAULT '',
    agreement_id         text        NOT NULL DEFAULT '',
    decision_id          text        NOT NULL DEFAULT '',
    policy_version       text        NOT NULL DEFAULT '',
    redisclosure_parties text[]      NOT NULL DEFAULT '{}',
    channel              text        NOT NULL DEFAULT '',
    record_required      boolean     NOT NULL DEFAULT true,         -- false: 99.32(d) needs no record
    details              jsonb       NOT NULL DEFAULT '{}',         -- kind-specific codes (case id, state ...)
    leaf_hash            bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    receipt_signature    bytea       NOT NULL CHECK (length(receipt_signature) = 64),
    key_id               text        NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_student ON entries (student_key, seq);
CREATE INDEX IF NOT EXISTS entries_district ON entries (district_id, seq);
CREATE INDEX IF NOT EXISTS entries_recipient ON entries (recipient_org, seq);
CREATE INDEX IF NOT EXISTS entries_agreement ON entries (agreement_id, seq);
CREATE INDEX IF NOT EXISTS entries_occurred ON entries (occurred_at, seq);
CREATE INDEX IF NOT EXISTS entries_elements ON entries USING gin (elements);

-- Perfect-subtree hashes as merkle.py addresses them: (level, index); level 0 = leaves.
CREATE TABLE IF NOT EXISTS tree_nodes (
    level  smallint NOT NULL CHECK (level >= 0),
    idx    bigint   NOT NULL CHECK (idx >= 0),
    hash   bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed tree heads: id, size and root (homeroom_tree_states, kernel 005), then when and the
-- log's signature over them.
SELECT homeroom_tree_states('tree_heads', $columns$
    timestamp_ms  bigint    NOT NULL,
    key_id        text      NOT NULL,
    signature     bytea     NOT NULL CHECK (length(signature) = 64)
$columns$);
CREATE INDEX IF NOT EXISTS tree_heads_size ON tree_heads (size, timestamp_ms);

CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'tree_nodes', 'tree_heads'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_append_only', t);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()',
            t || '_append_only', t);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_no_truncate', t);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()',
            t || '_no_truncate', t);
    END LOOP;
END
$$;

-- The role the service writes as. Roles are cluster-wide, so another database on the
-- same server may have created it already (or be creating it right now).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'homeroom_audit_writer') THEN
        CREATE ROLE homeroom_audit_writer NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

REVOKE ALL ON entries, tree_nodes, tree_heads FROM homeroom_audit_writer;
GRANT SELECT, INSERT ON entries, tree_nodes, tree_heads TO homeroom_audit_writer;
GRANT USAGE ON SEQUENCE tree_heads_id_seq TO homeroom_audit_writer;
-- The kernel's tables: the consumer marks events processed and writes dead letters to the outbox.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox, processed_events TO homeroom_audit_writer;
GRANT USAGE ON SEQUENCE outbox_id_seq TO homeroom_audit_writer;
