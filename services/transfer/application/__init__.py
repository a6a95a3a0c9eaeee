"""The transfer service's use cases (api.py, consumers.py and worker.py are thin adapters
over them, or the loop that calls them):

- `requesting`: request a transfer (an enrollment in another district opens a case), keep a
  school change inside a district, and district staff sending an escalated case round again;
- `working`: work one leased case as far as it goes now (the worker's step dispatch);
- `deciding`: the consent decision (the worker's first step);
- `fetching`: fetch the package from records, keep what was released, seal it;
- `delivering`: deliver (the release: the disclosure record and the parent's and sending
  district's notices) and re-send past the acknowledgement deadline;
- `escalating`: a failed attempt, the retry, the escalation to people, a failed case, waiting
  for the answer;
- `answering`: the receiving district acknowledges or rejects a delivered record;
- `reading`: who sees which case; a receiving school's, a district's, a parent's reads;
- `withholding`: which elements a transfer withholds (consent's answer kept as given, the package
  kept to what was released);
- `common`: moving a case one step with its history, events and notices in one transaction.
"""
