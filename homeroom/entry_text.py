"""The rules for text that goes into a disclosure record, in one place.

Records checks (and normalises) every text of a disclosure with these rules *before* it
releases a byte; the audit log applies the same rules to what it receives. So a release
and its disclosure record stand or fall together: nothing records would send can be
refused by audit, and audit never dead-letters a disclosure (FERPA 34 CFR 99.32 requires
the record): whatever breaks a rule is recorded escaped, with the rule named.

An entry holds names and codes, never values: a text longer than `MAX_TEXT` or holding a
control character is not what an entry should carry.
"""

from __future__ import annotations

import hashlib
import re

MAX_TEXT = 256  # codes, ids and names: anything longer is not what an entry holds
_DIGEST_CHARS = 16
# the characters `is_control` names, for a search in C (a rostering page checks ~2 million)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def is_control(character: str) -> bool:
    """C0 and C1 control characters and DEL (they rewrite terminals, logs and CSV cells)."""
    code = ord(character)
    return code < 0x20 or 0x7F <= code <= 0x9F


def text_problem(value: str) -> tuple[str, str] | None:
    """(rule, what is wrong) when ``value`` breaks an entry-text rule, else None."""
    if len(value) > MAX_TEXT:
        return "entry.text_too_long", f"is longer than {MAX_TEXT} characters"
    if _CONTROL.search(value):
        return "entry.control_character", "contains a control character"
    return None


def escape(value: str) -> str:
    """``value`` made to keep the rules, deterministically: control characters written as
    ``\\uXXXX``, and a text still too long cut with the SHA-256 of the whole appended, so
    the record still says exactly what was received and two different texts never meet."""
    escaped = "".join(f"\\u{ord(c):04x}" if is_control(c) else c for c in value)
    if len(escaped) <= MAX_TEXT:
        return escaped
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]
    suffix = f"...[{len(value)} chars, sha256:{digest}]"
    return escaped[: MAX_TEXT - len(suffix)] + suffix


def normalise(value: str) -> str:
    """``value`` unchanged when it keeps the rules, else ``escape(value)``."""
    return value if text_problem(value) is None else escape(value)
