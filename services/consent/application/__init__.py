"""The consent service's use cases, one module each (routes in `api.py`, `guardianship_api.py`
and `transparency_api.py`, and bus handlers in `consumers.py` are thin adapters over them):

* `registry`: record, edit, amend, activate, suspend an agreement and rotate its keys; read the
  agreements a caller may see, one agreement, its scope today, the public list;
* `ending`: end an agreement and shred what was released under it; the recipient's
  certification of destruction or return and its escalation; the periodic expiry check;
* `importing`: import a published Ed Law 2-d page as draft agreements;
* `choices`: parents' choices (directory opt-out and its rescission, written consent and its
  withdrawal, the history), an opt-out carried on a transfer, a district's transfer exclusions;
* `linking`: guardianship (linking codes, redemption, links and their end, links carried on a
  transfer, parent tokens, where a parent may act);
* `deciding`: the decision point, an adapter over the decision engine (`decisions.py`,
  `facts.py`): decide, screen, read a logged decision, count denials, show the policy;
* `transparency`: a district's own answers to the 32 questions of seed 001;
* `common`: the errors, the caller's name, and who may manage or read an agreement.
"""
