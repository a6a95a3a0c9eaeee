-- What a submission did not collect (elements dropped, records skipped), and the parts of
-- school calendars (terms and dated entries) from which each school year's instructional
-- days are resolved and published on calendar.v1.

ALTER TABLE submissions ADD COLUMN IF NOT EXISTS skipped bigint NOT NULL DEFAULT 0;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS not_collected jsonb;  -- [{file, name, kind, count}]

CREATE TABLE IF NOT EXISTS calendar_parts (
    district_id   text NOT NULL,
    school_id     text NOT NULL,
    school_year   int  NOT NULL,   -- the year it starts in: 2021 for 2021-2022
    source        text NOT NULL CHECK (source IN ('calendar', 'terms')),
    part          text NOT NULL,   -- 'term:<name>' or 'day:<ISO date>'
    term_name     text,
    begin_date    date,
    end_date      date,
    declared_days int,
    day           date,
    instructional boolean,
    PRIMARY KEY (district_id, school_id, school_year, source, part)
);
