-- Elements a district will not send with a transfer (contract: "less elements the district
-- marked not transferable"), on top of the catalogue's own `transferable` flag.
CREATE TABLE transfer_exclusions (
    district_id text        PRIMARY KEY,
    elements    text[]      NOT NULL,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL
);
