"""The ingest service's use cases, one module each (routes in `api.py` and the CLI call them):

- `submissions`: accept an upload (stream it to disk, Idempotency-Key, 413/422), check one
  without taking it (dry run), read a submission's report, confirm a held submission;
- `jobs`: run and track submissions in the background (fair slots per district, small
  uploads apart, retry while the database is away, resume after a restart, stop);
- `pipeline`: one submission, chunk by chunk: parse (`formats/`, raw values screened by
  `screening.py`) -> registry -> validate (`validation.py`) -> pseudonymise and seal -> events,
  problems and progress in one transaction; the bulk-withdrawal safety rail before it;
- `events`: a parsed record becomes the events ingest publishes (registrations with sealed
  PII, enrollments, attendance, suspensions, schools, roster, calendars, dead letters).
"""
