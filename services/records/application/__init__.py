"""Records' use cases, one module per group (the routes in `api.py` and `oneroster_api.py` and the
bus handlers in `consumers.py` parse, call one of these and shape the answer). Reads, releases
and requests:

- `reads`: who may read which record, opened how far: the owning district's staff
  (`district_students`, `district_student`); parents, vendors and staff by student key
  (`student_records`: consent decides each release, `decide`); `vendor_gate` (an agreement not
  in force releases nothing); `open_record`.
- `disclosures`: every release recorded before it is returned: `commit_releases` (per district),
  `record_releases` (read-log row and disclosure.v1 event per student), `seal_release_copy`.
- `refusals`: how a read is refused (404, 403, 503 consent unavailable, 410 destroyed), counted.
- `rostering`: what a vendor's OneRoster reads release under its agreement: organisations,
  academic sessions, courses and classes (not personal data), students, demographics, teachers
  and class enrollments (personal data: cut to the agreement, each release a disclosure).
- `roster_export`: the vendor's whole permitted roster as a OneRoster 1.2 CSV zip (bulk or delta).
- `amendments`: a parent's amendment request (FERPA 99.20), the district's decision and notice,
  the parent's statement after a refusal (99.21).
- `transfers`: the transfer service's package read and delivery write.
- `district_views`: the owning district's chronic-absence worklist, student names and eligibility,
  and family letter languages (no disclosure).
- `waiting_marks`: attendance for a student the district has not registered yet waits, is
  applied once the student is known, and is dead-lettered if the student never comes.

What each bus event does to the record (`consumers.py` hands each change to one of these):

- `enrolling`: enrollment.v1, a batch at a time: registrations, enrollments, withdrawals, school
  changes, and the students they queue for the absence reviewer.
- `marking`: attendance.v1, a batch at a time: marks into the record, or kept waiting.
- `schools`: a school registered (organization.v1); a school calendar published (calendar.v1).
- `suspensions`: a suspension (discipline.v1), for a student the district knows.
- `consent_changes`: a directory opt-out recorded or rescinded; an agreement ended (consent.v1).
- `shredding`: keys destroyed (keys.v1): a student's or district's rows, an agreement's copies.
- `roster_updates`: roster.v1, a batch at a time: sessions, courses, classes, staff, class
  enrollments.
- `incoming`: what every one of these checks of an event (required fields, dates, the
  district) and `scoped`, the district set once per transaction.

Erasure orders, retention and agreement-copy destruction are in `services/records/destruction.py`;
the absence reviewer in `services/records/absence.py`.
"""
