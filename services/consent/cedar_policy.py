"""The Cedar restatement of the decision policy (`policy.cedar`), as text. No engine runs it here.

The one engine that decides is `decisions.decide` (docs/policy.md says why). `policy.cedar`
states the same rules formally, one request per data element, and is served next to the
rule table at `GET /v1/policy`. It is evaluated only by the test oracle
(tests/services/consent/test_policy.py), which runs both on the same generated requests and
fails on any element they disagree on, so the text served here is held to what the engine does.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

POLICY_FILE = Path(__file__).with_name("policy.cedar")


@functools.cache
def policy_text() -> str:
    return POLICY_FILE.read_text()


def policy_ids() -> list[str]:
    """The `@id` of each policy in file order (Cedar names them policy0, policy1 ...)."""
    return re.findall(r'^@id\("([^"]+)"\)', policy_text(), flags=re.M)
