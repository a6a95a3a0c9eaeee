-- Rosters for vendors' apps (roster.v1, issue 23): academic sessions, courses, classes, staff
-- and class enrollments.
--
-- Sessions, courses and classes are not personal data: no RLS (like `schools`). Staff and
-- class enrollments are personal data (a class enrollment says which student is in which
-- class): RLS by district like every student table, and staff elements stored sealed.
--
-- Sessions, courses, classes and staff are district entities like `schools`: keyed (district_id,
-- own key), their own columns, then deleted and updated_at (homeroom_district_entity, kernel 004).

SELECT homeroom_district_entity('academic_sessions', 'session_id', $columns$
    title         text        NOT NULL,
    session_type  text        NOT NULL,
    start_date    date        NOT NULL,
    end_date      date        NOT NULL,
    parent_id     text        NOT NULL DEFAULT '',
    school_year   int         NOT NULL
$columns$);

SELECT homeroom_district_entity('courses', 'course_id', $columns$
    title           text        NOT NULL,
    course_code     text        NOT NULL DEFAULT '',
    school_id       text        NOT NULL DEFAULT '',   -- '': a district-wide course
    grades          text[]      NOT NULL DEFAULT '{}',
    subjects        text[]      NOT NULL DEFAULT '{}',
    school_year_id  text        NOT NULL DEFAULT ''
$columns$);

SELECT homeroom_district_entity('classes', 'class_id', $columns$
    title        text        NOT NULL,
    class_code   text        NOT NULL DEFAULT '',
    class_type   text        NOT NULL DEFAULT 'scheduled',
    course_id    text        NOT NULL DEFAULT '',
    school_id    text        NOT NULL,
    term_ids     text[]      NOT NULL DEFAULT '{}',
    periods      text[]      NOT NULL DEFAULT '{}',
    grades       text[]      NOT NULL DEFAULT '{}',
    subjects     text[]      NOT NULL DEFAULT '{}',
    location     text        NOT NULL DEFAULT ''
$columns$);
CREATE INDEX classes_by_school ON classes (district_id, school_id, class_id);

GRANT SELECT, INSERT, UPDATE ON academic_sessions, courses, classes TO homeroom_records_app;

SELECT homeroom_district_entity('staff', 'staff_key', $columns$
    role         text        NOT NULL DEFAULT 'teacher',
    school_ids   text[]      NOT NULL DEFAULT '{}'
$columns$);

-- Sealed staff elements (staff.first_name ...), one row per element, stored as received.
CREATE TABLE staff_elements (
    district_id  text  NOT NULL,
    staff_key    text  NOT NULL,
    element      text  NOT NULL,
    sealed       bytea NOT NULL,
    PRIMARY KEY (district_id, staff_key, element)
);

CREATE TABLE class_enrollments (
    district_id  text        NOT NULL,
    class_id     text        NOT NULL,
    role         text        NOT NULL CHECK (role IN ('student', 'teacher')),
    user_key     text        NOT NULL,   -- the student key or the staff key
    school_id    text        NOT NULL,
    is_primary   boolean     NOT NULL DEFAULT false,
    begin_date   date,
    end_date     date,
    deleted      boolean     NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (district_id, class_id, role, user_key)
);
CREATE INDEX class_enrollments_by_user ON class_enrollments (district_id, user_key);

SELECT homeroom_district_isolation(t, 'SELECT, INSERT, UPDATE, DELETE', 'homeroom_records_app')
FROM unnest(ARRAY['staff', 'staff_elements', 'class_enrollments']) AS t;
