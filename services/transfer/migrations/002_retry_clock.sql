-- A person may send an escalated case round again; its delivery deadline then counts from
-- the retry, not from the opening (which stays as it was, for the record).
ALTER TABLE transfer_cases ADD COLUMN clock_started_at timestamptz;
UPDATE transfer_cases SET clock_started_at = opened_at;
ALTER TABLE transfer_cases ALTER COLUMN clock_started_at SET NOT NULL;
ALTER TABLE transfer_cases ALTER COLUMN clock_started_at SET DEFAULT now();
ALTER TABLE transfer_cases ADD COLUMN retries int NOT NULL DEFAULT 0;
