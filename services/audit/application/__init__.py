"""The audit service's use cases (routes and consumers are thin adapters that call these).

- `appending`: a poll's events appended to the log as entries (the bus consumer's use case).
- `tree_heads`: sign a tree head (on demand and by the periodic head keeper): where a tree
  head is signed.
- `witnessing`: a signed head sent to the witness as a checkpoint, the cosigned checkpoint kept.
- `proofs`: an entry with its inclusion proof, the latest head and the log's keys, inclusion
  and consistency proofs.
- `search`: compliance search, a child's disclosures for a parent, a district's public counts,
  which disclosure ids the log holds (records' reconciliation).
- `export`: the whole log as JSON Lines (for the offline verifier) or CSV.
- `verification`: the stored log verified now (entries, receipts, heads, stored tree nodes,
  what the witness saw).
- `selection`: every disclosure to a recipient in a period, with the key destructions that
  made some of it unreadable, and one multiproof of all of them against a signed, witnessed
  tree head (what a breach's scope is computed from).
"""
