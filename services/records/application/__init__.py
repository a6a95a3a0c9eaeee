"""The records service's use cases (issue 20's shape; routes and consumers call these).

- `rostering`: what a vendor's OneRoster reads release under its agreement: organisations,
  academic sessions, courses and classes (not personal data), students, demographics, teachers
  and class enrollments (personal data: cut to the agreement, each release a disclosure).
"""
