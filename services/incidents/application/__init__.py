"""The incidents service's use cases (api.py is a thin adapter over them):

- `reporting`: open an incident (compliance, a district data office, or the recipient reporting
  its own breach), change its details, record the contractor's notice, delay the families'
  notice (121.10(e)), close it, a district's own shorter deadlines, and what each caller sees;
- `scoping`: freeze a scope version from the disclosure log, proven and signed;
- `clocks`: the obligations' deadlines as metrics for the alert rules;
- `notifying`: the report to the Chief Privacy Officer, the families' letters, the district summary;
- `containment`: the recipient's agreement suspended and its keys rotated, checked with consent and recorded;
- `publishing`: a breach notice a district chooses to publish;
- `reading`: a frozen scope version, its students and its signed bundle; a report as sent; a district's
  own deadlines; the breach letters about a child;
- `common`: who may see and act on an incident, recording a change, consent's answer about an agreement.

The typed state they take is `services/incidents/state.py`.
"""
