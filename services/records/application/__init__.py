"""Records' use cases (issue #20's shape; the older ones still live in `api.py` and
`consumers.py` until that issue moves them):

- `waiting_marks`: attendance for a student the district has not registered yet waits, is
  applied once the student is known, and is dead-lettered if the student never comes.
"""
