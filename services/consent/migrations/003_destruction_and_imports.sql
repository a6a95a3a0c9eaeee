-- What shredding an agreement's keys destroyed in each district, as records reported it
-- (keys.v1 data_destroyed): {"d-100": {"items": 12, "bytes": 40961, "verified_unreadable": true}}.
ALTER TABLE agreement_ends ADD COLUMN copies_destroyed jsonb NOT NULL DEFAULT '{}';

-- The recipient's own obligation when an agreement ends (Ed Law 2-d, 8 NYCRR 121.3(c)(3)):
-- destroy or return its copies as the disposition says and certify it by `due_on`. Overdue
-- certifications are escalated to compliance and shown on the public page.
CREATE TABLE destruction_certifications (
    agreement_id  text        PRIMARY KEY REFERENCES agreements (agreement_id),
    organization  text        NOT NULL,
    disposition   text        NOT NULL CHECK (disposition IN ('destroy', 'return')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    due_on        date        NOT NULL,
    certified_at  timestamptz,
    certified_by  text,                 -- the person, as they named themselves
    method        text CHECK (method IS NULL OR method IN ('destroyed', 'returned')),
    completed_on  date,
    what          text,
    recorded_by   text,                 -- role:subject of the token that recorded it
    escalated_at  timestamptz
);
CREATE INDEX destruction_certifications_open ON destruction_certifications (due_on) WHERE certified_at IS NULL;

-- The problems an Ed Law 2-d import found in each entry, shown beside the draft for review.
ALTER TABLE agreements ADD COLUMN import_problems jsonb NOT NULL DEFAULT '[]';
