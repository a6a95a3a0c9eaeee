-- Guardianship links (issue 24): who may act as a student's parent, from a linking code the
-- district issued. Only a hash of each code is kept: a leaked table links nobody.
CREATE TABLE linking_codes (
    code_id text PRIMARY KEY,
    code_hash bytea NOT NULL UNIQUE,
    district_id text NOT NULL,
    student_key text NOT NULL,
    relationship text NOT NULL CHECK (relationship IN ('parent', 'eligible_student')),
    issued_by text NOT NULL,
    issued_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    redeemed_at timestamptz,
    redeemed_by text,
    revoked_at timestamptz,
    revoked_by text
);
CREATE INDEX linking_codes_student ON linking_codes (district_id, student_key);

CREATE TABLE guardianships (
    link_id text PRIMARY KEY,
    subject text NOT NULL,
    student_key text NOT NULL,
    district_id text NOT NULL,
    relationship text NOT NULL CHECK (relationship IN ('parent', 'eligible_student')),
    status text NOT NULL CHECK (status IN ('active', 'proposed', 'revoked', 'declined')),
    code_id text REFERENCES linking_codes (code_id),
    issued_by text NOT NULL,
    linked_at timestamptz NOT NULL,
    from_district_id text,  -- carried by a transfer from this district
    ended_at timestamptz,
    ended_by text,
    end_reason text
);
-- One live link per person, student and district.
CREATE UNIQUE INDEX guardianships_live ON guardianships (subject, student_key, district_id)
    WHERE status IN ('active', 'proposed');
CREATE INDEX guardianships_student ON guardianships (student_key, district_id);

-- Every redemption attempt, refused or not: the evidence of guessing (and its alert).
CREATE TABLE linking_attempts (
    attempt_id bigserial PRIMARY KEY,
    attempted_at timestamptz NOT NULL,
    subject text NOT NULL,
    client text NOT NULL DEFAULT '',
    outcome text NOT NULL,
    code_id text,
    district_id text,
    student_key text
);
CREATE INDEX linking_attempts_subject ON linking_attempts (subject, attempted_at);
SELECT homeroom_append_only('linking_attempts');
