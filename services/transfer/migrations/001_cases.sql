-- Transfer cases, their history, and where each student was last enrolled per district.

CREATE TABLE transfer_cases (
    case_id            text        PRIMARY KEY,   -- uuid5 of (student, from, to, receiving enrollment)
    student_key        text        NOT NULL,
    from_district_id   text        NOT NULL,
    to_district_id     text        NOT NULL,
    to_school_id       text        NOT NULL,
    enrollment_ref     text        NOT NULL,      -- receiving school and entry date
    entry_date         date        NOT NULL,
    state              text        NOT NULL,
    reason             text        NOT NULL DEFAULT '',
    attempt            int         NOT NULL DEFAULT 0,   -- failed attempts of the current step
    resends            int         NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    lease_until        timestamptz,
    enrolled_at        timestamptz NOT NULL,         -- time of the enrollment event
    opened_at          timestamptz NOT NULL DEFAULT now(),
    decided_at         timestamptz,
    delivered_at       timestamptz,
    closed_at          timestamptz,
    decision_id        text        NOT NULL DEFAULT '',
    legal_basis        text        NOT NULL DEFAULT '',
    elements_released  text[]      NOT NULL DEFAULT '{}',
    elements_withheld  jsonb       NOT NULL DEFAULT '[]',   -- [{"element", "reason"}]
    package_sealed     bytea,                         -- the package in transit, sealed; dropped when closed
    cause_event_id     text        NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (from_district_id <> to_district_id),
    CHECK (state IN ('requested', 'decided', 'packaged', 'delivered', 'acknowledged', 'rejected',
                     'refused', 'failed', 'escalated', 'held'))
);

-- At most one open case per student and pair of districts, whatever the events did.
CREATE UNIQUE INDEX transfer_cases_one_open
    ON transfer_cases (student_key, from_district_id, to_district_id)
    WHERE state IN ('requested', 'decided', 'packaged', 'delivered', 'held', 'escalated');
-- One case per receiving enrollment, whichever district a late event says it came from.
CREATE UNIQUE INDEX transfer_cases_one_per_enrollment ON transfer_cases (student_key, to_district_id, enrollment_ref);
CREATE INDEX transfer_cases_due ON transfer_cases (next_attempt_at)
    WHERE state IN ('requested', 'decided', 'packaged', 'delivered');
CREATE INDEX transfer_cases_inbound ON transfer_cases (to_district_id, opened_at);
CREATE INDEX transfer_cases_outbound ON transfer_cases (from_district_id, opened_at);

CREATE TABLE transfer_history (
    seq       bigserial   PRIMARY KEY,
    case_id   text        NOT NULL REFERENCES transfer_cases (case_id),
    step      text        NOT NULL,     -- requested, decided, attempt_failed:deliver:2, notified:parent, ...
    state     text        NOT NULL,     -- the case state after the step
    at        timestamptz NOT NULL DEFAULT now(),
    reason    text        NOT NULL DEFAULT '',
    detail    jsonb       NOT NULL DEFAULT '{}',
    event_id  text        NOT NULL DEFAULT '',
    UNIQUE (case_id, step)
);

-- The latest enrollment of each student in each district (from enrollment.v1).
CREATE TABLE student_enrollments (
    student_key  text        NOT NULL,
    district_id  text        NOT NULL,
    school_id    text        NOT NULL,
    entry_date   date        NOT NULL,
    event_id     text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_key, district_id)
);
