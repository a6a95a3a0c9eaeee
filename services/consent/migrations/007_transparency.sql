-- A district's own answers to the 32 questions of seed 001 (issue 24): the policy questions
-- Homeroom cannot answer from its data, each with who reviewed it and when.
CREATE TABLE transparency_answers (
    district_id text NOT NULL,
    question integer NOT NULL CHECK (question BETWEEN 1 AND 32),
    text text NOT NULL,
    reviewed_on date NOT NULL,
    reviewed_by text NOT NULL,
    PRIMARY KEY (district_id, question)
);
