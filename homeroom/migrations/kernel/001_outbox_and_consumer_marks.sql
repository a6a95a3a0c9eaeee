-- The kernel's own tables, in every service database: the outbox (events written in the same
-- transaction as the state they describe; homeroom/outbox.py), the consumers' idempotency marks
-- and offsets (homeroom/bus/consumer.py), and the append-only machinery the grants read
-- (homeroom/storage.py). Idempotent DDL: databases made before the kernel had numbered
-- migrations already hold these tables, and applying this file to them changes nothing.
CREATE TABLE IF NOT EXISTS outbox (
    id            bigserial PRIMARY KEY,
    event_id      text        NOT NULL UNIQUE,
    topic         text        NOT NULL,
    key           bytea,
    header_bytes  bytea       NOT NULL,  -- the Kafka record headers, length-prefixed (homeroom/outbox.py)
    payload       bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Databases made before the headers were packed (JSON pairs of name and hex value): convert the
-- waiting rows in place, each header as key length (1 byte), key, value length (4 bytes), value.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = 'outbox' AND column_name = 'headers') THEN
        ALTER TABLE outbox ADD COLUMN header_bytes bytea;
        UPDATE outbox SET header_bytes = coalesce((
            SELECT string_agg(set_byte('\x00'::bytea, 0, octet_length(convert_to(h.v->>0, 'UTF8')))
                              || convert_to(h.v->>0, 'UTF8') || int4send(octet_length(decode(h.v->>1, 'hex')))
                              || decode(h.v->>1, 'hex'), ''::bytea ORDER BY h.n)
            FROM jsonb_array_elements(headers) WITH ORDINALITY h(v, n)), ''::bytea);
        ALTER TABLE outbox DROP COLUMN headers;
        ALTER TABLE outbox ALTER COLUMN header_bytes SET NOT NULL;
    END IF;
END
$$;
-- The relay's lanes read one topic at a time in id order.
CREATE INDEX IF NOT EXISTS outbox_topic_id ON outbox (topic, id);
CREATE TABLE IF NOT EXISTS processed_events (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    topic        text        NOT NULL,
    partition    int         NOT NULL,
    "offset"     bigint      NOT NULL,
    outcome      text        NOT NULL,  -- applied | dead_lettered
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
-- The next offset to apply per consumer group and partition, written in the same transaction
-- as the state it covers; consumers seek here on assignment (homeroom/bus/consumer.py).
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group text   NOT NULL,
    topic          text   NOT NULL,
    partition      int    NOT NULL,
    next_offset    bigint NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition)
);
-- Tables whose rows are never changed or removed: the runner grants SELECT and INSERT only.
CREATE TABLE IF NOT EXISTS append_only_tables (table_name text PRIMARY KEY);
CREATE OR REPLACE FUNCTION homeroom_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE OR REPLACE FUNCTION homeroom_append_only(tbl text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_append_only', tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW '
                   'EXECUTE FUNCTION homeroom_refuse_change()', tbl || '_append_only', tbl);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tbl || '_no_truncate', tbl);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
                   'EXECUTE FUNCTION homeroom_refuse_change()', tbl || '_no_truncate', tbl);
    INSERT INTO append_only_tables (table_name) VALUES (tbl) ON CONFLICT DO NOTHING;
END
$$;
