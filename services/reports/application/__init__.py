"""The reports service's use cases, one module each:

* `tally`: absorb batches of pseudonymised events into students' values and schools' rows;
  rebuild after a rebalance; recount on a new calendar or a new day;
* `reference`: keep school calendars and names (calendar.v1, organization.v1);
* `publish`: compute, suppress and publish a statewide snapshot, recorded as a de-identified
  release (FERPA 99.31(b)(1)) in the audit log, with who asked;
* `reading`: the published snapshots for anyone (JSON, a district's part, CSV);
* `district`: a district's own unsuppressed numbers, and its preview of what the public sees.
"""
