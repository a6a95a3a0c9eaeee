"""Records' use cases (issue #20's shape; the older ones still live in `api.py` and
`consumers.py` until that issue moves them):

- `waiting_marks`: attendance for a student the district has not registered yet waits, is
  applied once the student is known, and is dead-lettered if the student never comes.
- `rostering`: what a vendor's OneRoster reads release under its agreement: organisations,
  academic sessions, courses and classes (not personal data), students, demographics, teachers
  and class enrollments (personal data: cut to the agreement, each release a disclosure).
- `roster_export`: the vendor's whole permitted roster as a OneRoster 1.2 CSV zip (bulk or delta).
"""
