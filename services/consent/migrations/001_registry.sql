-- Consent service: the agreement registry, parents' choices and the decision log.

-- One row per agreement: what lists, locks and the expiry check need without reading
-- every version. The versions themselves are the record.
CREATE TABLE agreements (
    agreement_id   text        PRIMARY KEY,
    organization   text        NOT NULL,
    category       text        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('draft', 'active', 'suspended', 'ended')),
    latest_version int         NOT NULL,
    districts      text[]      NOT NULL DEFAULT '{}',  -- every district any version covered
    source         text        NOT NULL,
    source_digest  text,                               -- import-2d: sha256 of the entry's text
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agreements_status ON agreements (status);
CREATE INDEX agreements_districts ON agreements USING gin (districts);

-- Every version ever recorded, kept. `document` is the whole `Agreement` model as JSON
-- (supplemental answers and terms are document-shaped); `status` mirrors it for queries.
-- A version's terms never change once it is not a draft; its status may (suspend, end).
CREATE TABLE agreement_versions (
    agreement_id text        NOT NULL REFERENCES agreements (agreement_id),
    version      int         NOT NULL CHECK (version >= 1),
    status       text        NOT NULL,
    document     jsonb       NOT NULL,
    recorded_by  text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (agreement_id, version)
);

-- Each status change and edit, with who and why: the agreement's own history.
CREATE TABLE agreement_history (
    id           bigserial   PRIMARY KEY,
    agreement_id text        NOT NULL REFERENCES agreements (agreement_id),
    version      int         NOT NULL,
    change       text        NOT NULL,  -- signed, amended, terms_set, activated, suspended, ended, keys_destroyed
    actor        text        NOT NULL,
    detail       jsonb       NOT NULL DEFAULT '{}',
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agreement_history_agreement ON agreement_history (agreement_id, id);

-- The end of an agreement and the destruction of what was released under it.
-- keys_destroyed_at stays NULL until every covered district's keys are shredded, so a
-- crash between the end and the shredding is finished by the next expiry check.
CREATE TABLE agreement_ends (
    agreement_id      text        PRIMARY KEY REFERENCES agreements (agreement_id),
    version           int         NOT NULL,
    reason            text        NOT NULL CHECK (reason IN ('expired', 'terminated')),
    disposition       text        NOT NULL CHECK (disposition IN ('destroy', 'return')),
    ended_on          date        NOT NULL,
    ended_by          text        NOT NULL,
    ended_at          timestamptz NOT NULL DEFAULT now(),
    districts         text[]      NOT NULL,
    keys_destroyed    int,
    keys_destroyed_at timestamptz
);

-- Directory-information opt-out: current state per student and district. Keyed by the
-- student, not an enrollment, so it holds after the student leaves, until rescinded.
CREATE TABLE directory_opt_outs (
    student_key  text        NOT NULL,
    district_id  text        NOT NULL,
    opted_out    boolean     NOT NULL,
    recorded_by  text        NOT NULL,
    method       text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (student_key, district_id)
);

-- Written consents (FERPA 99.30) and their withdrawal.
CREATE TABLE written_consents (
    consent_id       uuid        PRIMARY KEY,
    student_key      text        NOT NULL,
    district_id      text        NOT NULL,
    recipient        text        NOT NULL,  -- agreement id
    elements         text[]      NOT NULL,
    purpose          text,
    valid_until      date,
    recorded_by      text        NOT NULL,
    method           text        NOT NULL,
    given_at         timestamptz NOT NULL,
    withdrawn_at     timestamptz,
    withdrawn_by     text,
    withdrawn_method text
);
CREATE INDEX written_consents_student ON written_consents (student_key, district_id);

-- Every parent's choice as it was recorded, in order: the history parents and staff see.
CREATE TABLE parental_choices (
    id          bigserial   PRIMARY KEY,
    student_key text        NOT NULL,
    district_id text        NOT NULL,
    kind        text        NOT NULL,  -- directory_opt_out_recorded, directory_opt_out_rescinded, consent_given, consent_withdrawn
    consent_id  uuid,
    recorded_by text        NOT NULL,
    method      text        NOT NULL,
    at          timestamptz NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX parental_choices_student ON parental_choices (student_key, district_id, id);

-- Every decision the decision point gave, by its id: request and answer as sent.
CREATE TABLE decisions (
    decision_id  uuid        PRIMARY KEY,
    request      jsonb       NOT NULL,
    answer       jsonb       NOT NULL,
    allow        boolean     NOT NULL,
    agreement_id text,
    decided_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_agreement ON decisions (agreement_id, decided_at);
