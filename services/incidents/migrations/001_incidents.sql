-- Incidents (breaches and unauthorized releases), their frozen scopes, clocks and notices.
-- Everything that records what was decided, found, sent or done is append-only
-- (homeroom_append_only: the service's login may only SELECT and INSERT); only the
-- incident's current state and its obligations' current standing are updated in place,
-- and every such change is also a row of incident_history and an audit-log event.

CREATE TABLE IF NOT EXISTS incidents (
    incident_id             text        PRIMARY KEY,
    status                  text        NOT NULL CHECK (status IN ('open', 'scoped', 'notified', 'closed')),
    opened_at               timestamptz NOT NULL,
    opened_by               text        NOT NULL,            -- role:subject
    reporter_role           text        NOT NULL,            -- compliance, district, recipient
    reporter                text        NOT NULL,            -- the district, the organisation, or compliance
    discovered_at           timestamptz NOT NULL,
    discovered_by           text        NOT NULL CHECK (discovered_by IN ('recipient', 'district', 'compliance')),
    recipient_org           text        NOT NULL DEFAULT '', -- the organisation breached
    system                  text        NOT NULL DEFAULT '', -- or the system breached, when not a recipient
    agreement_ids           text[]      NOT NULL DEFAULT '{}',
    districts               text[]      NOT NULL DEFAULT '{}',
    exposure_start          timestamptz,
    exposure_end            timestamptz,
    disclosed_since         timestamptz,                     -- only data the recipient received since (optional)
    description             text        NOT NULL,
    investigation           text        NOT NULL DEFAULT '',
    contact                 text        NOT NULL,
    parents_delay_reason    text        NOT NULL DEFAULT '',
    parents_delay_ended_at  timestamptz,
    latest_version          int         NOT NULL DEFAULT 0,
    closed_at               timestamptz
);
CREATE INDEX IF NOT EXISTS incidents_districts ON incidents USING gin (districts);
CREATE INDEX IF NOT EXISTS incidents_agreements ON incidents USING gin (agreement_ids);

CREATE TABLE IF NOT EXISTS incident_history (
    id           bigserial   PRIMARY KEY,
    incident_id  text        NOT NULL REFERENCES incidents,
    at           timestamptz NOT NULL,
    actor        text        NOT NULL,
    change       text        NOT NULL,      -- opened, details_changed, contractor_notified, scoped, ...
    details      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS incident_history_incident ON incident_history (incident_id, id);

-- When each district received the contractor's notice (121.10(b) starts from it).
CREATE TABLE IF NOT EXISTS contractor_notices (
    incident_id  text        NOT NULL REFERENCES incidents,
    district_id  text        NOT NULL,
    received_at  timestamptz NOT NULL,
    recorded_by  text        NOT NULL,
    method       text        NOT NULL,      -- homeroom (the contractor's report through the API), email, phone, letter
    PRIMARY KEY (incident_id, district_id)
);

CREATE TABLE IF NOT EXISTS scope_versions (
    incident_id     text        NOT NULL REFERENCES incidents,
    version         int         NOT NULL,
    computed_at     timestamptz NOT NULL,
    computed_by     text        NOT NULL,
    selection       jsonb       NOT NULL,
    exposure_start  timestamptz,
    tree_size       bigint      NOT NULL,
    tree_root       bytea       NOT NULL,
    witnessed       boolean     NOT NULL,
    totals          jsonb       NOT NULL,
    entries         bigint      NOT NULL,
    proof_hashes    bigint      NOT NULL,
    bundle_sha256   bytea       NOT NULL,
    bundle_bytes    bigint      NOT NULL,  -- compressed
    raw_bytes       bigint      NOT NULL,  -- uncompressed
    signature_note  text        NOT NULL,
    PRIMARY KEY (incident_id, version)
);
CREATE TABLE IF NOT EXISTS scope_bundle_chunks (
    incident_id  text   NOT NULL,
    version      int    NOT NULL,
    n            int    NOT NULL,
    data         bytea  NOT NULL,
    PRIMARY KEY (incident_id, version, n),
    FOREIGN KEY (incident_id, version) REFERENCES scope_versions DEFERRABLE INITIALLY DEFERRED
);
CREATE TABLE IF NOT EXISTS scope_students (
    incident_id          text    NOT NULL,
    version              int     NOT NULL,
    district_id          text    NOT NULL,
    student_key          text    NOT NULL,
    elements             text[]  NOT NULL,
    unreadable_elements  text[]  NOT NULL,
    disclosures          int     NOT NULL,
    first_shared         text,
    last_shared          text,
    destructions         bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (incident_id, version, district_id, student_key),
    FOREIGN KEY (incident_id, version) REFERENCES scope_versions DEFERRABLE INITIALLY DEFERRED
);

-- The clocks: one row per obligation (kind, district, basis). Its standing changes in place
-- (closed by the act it requires); each change is in incident_history too.
CREATE TABLE IF NOT EXISTS obligations (
    incident_id  text        NOT NULL REFERENCES incidents,
    kind         text        NOT NULL,
    district_id  text        NOT NULL,
    basis        text        NOT NULL,     -- law, district
    citation     text        NOT NULL,
    start_event  text        NOT NULL,
    starts_at    timestamptz,
    due_at       timestamptz,
    state        text        NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'delayed', 'met', 'not_required')),
    closed_at    timestamptz,
    closed_by    text        NOT NULL DEFAULT '',
    act          text        NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, kind, district_id, basis)
);
CREATE INDEX IF NOT EXISTS obligations_open ON obligations (due_at) WHERE state IN ('open', 'delayed');

CREATE TABLE IF NOT EXISTS district_deadlines (
    district_id  text        PRIMARY KEY,
    hours        jsonb       NOT NULL,     -- kind → hours, each shorter than the law's
    set_by       text        NOT NULL,
    set_at       timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS containment_steps (
    id           bigserial   PRIMARY KEY,
    incident_id  text        NOT NULL REFERENCES incidents,
    at           timestamptz NOT NULL,
    actor        text        NOT NULL,
    action       text        NOT NULL,     -- agreement_suspended, keys_rotated
    agreement_id text        NOT NULL,
    details      jsonb       NOT NULL
);

CREATE TABLE IF NOT EXISTS reports (
    report_id    text        PRIMARY KEY,
    incident_id  text        NOT NULL REFERENCES incidents,
    version      int         NOT NULL,
    kind         text        NOT NULL,     -- cpo_report, district_summary
    district_id  text        NOT NULL,
    created_at   timestamptz NOT NULL,
    created_by   text        NOT NULL,
    document     text        NOT NULL,
    machine      jsonb       NOT NULL,
    notice_id    text        NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_incident ON reports (incident_id, created_at);

CREATE TABLE IF NOT EXISTS letters (
    incident_id   text        NOT NULL REFERENCES incidents,
    version       int         NOT NULL,
    district_id   text        NOT NULL,
    student_key   text        NOT NULL,
    notice_id     text        NOT NULL,
    language      text        NOT NULL,
    requested_language text   NOT NULL DEFAULT '',
    digest        text        NOT NULL,    -- what the letter said (elements), to send again only what changed
    issued_at     timestamptz NOT NULL,
    PRIMARY KEY (incident_id, version, district_id, student_key)
);
CREATE INDEX IF NOT EXISTS letters_student ON letters (student_key, incident_id);

CREATE TABLE IF NOT EXISTS publications (
    incident_id   text        NOT NULL REFERENCES incidents,
    district_id   text        NOT NULL,
    text          text        NOT NULL,
    published_at  timestamptz NOT NULL,
    published_by  text        NOT NULL,
    PRIMARY KEY (incident_id, district_id, published_at)
);

SELECT homeroom_append_only(t) FROM unnest(ARRAY['incident_history', 'contractor_notices', 'scope_versions',
    'scope_bundle_chunks', 'scope_students', 'containment_steps', 'reports', 'letters', 'publications']) AS t;
