-- Notices owed to people (homeroom/notices.py), in the database of every service that sends
-- them (ServiceSpec.sends_notices). Idempotent: databases made before numbered kernel
-- migrations already hold the table.
CREATE TABLE IF NOT EXISTS notices (
    notice_id       text        PRIMARY KEY,
    recipient_role  text        NOT NULL,
    recipient_id    text        NOT NULL,
    kind            text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    cause           text        NOT NULL,
    student_key     text        NOT NULL DEFAULT '',
    district_id     text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    address         text,                     -- where it was sent (null until sent)
    sent_at         timestamptz,              -- when the SMTP server accepted it
    attempts        int         NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS notices_unsent ON notices (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS notices_recipient ON notices (recipient_role, recipient_id, created_at);
