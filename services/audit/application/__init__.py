"""The audit service's use cases (routes and consumers are thin adapters that call these).

- `selection`: every disclosure to a recipient in a period, with the key destructions that
  made some of it unreadable, and one multiproof of all of them against a signed, witnessed
  tree head (what a breach's scope is computed from).
"""
