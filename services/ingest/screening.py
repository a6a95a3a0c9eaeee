"""Recognising forbidden content in raw input values: Social Security numbers (seed 000) and
field names that announce them. Used by every parser on every raw value it sees, including
values in fields it does not know, before anything else is looked at. Pure; no I/O.

What counts as an SSN (rule ``ssn.forbidden``):

* a field whose name says so: a word ``ssn`` or ``social security`` in the name, in any case
  or spelling (``ssn``, ``SSN``, ``studentSSN``, ``socialSecurityNumber``,
  ``social_security_number``), when it holds a value;
* an Ed-Fi identification code whose identification system is SSN / Social Security;
* any value that is, as a whole, nine digits or 3-2-4 digits with dashes or spaces and has
  the structure of an issued SSN (area not 000, 666 or 9xx; group not 00; serial not 0000).
  This catches 9-digit ids: a district whose own ids are nine digits must send them with a
  prefix or set ``ScreeningPolicy(nine_digit_ids=False)``, which still refuses the dashed form.
  Organisation, section and term ids (``schoolId``, ``educationOrganizationId``,
  ``schoolSourcedId`` ...) are exempt from the undashed rule: Ed-Fi school ids are nine digits;
* inside free text (addresses, notes, unknown fields): ``ddd-dd-dddd`` anywhere, and a
  standalone nine-digit run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from services.ingest.parsed_records import ssn_structure

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WHOLE = re.compile(r"\s*(\d{3})([- ]?)(\d{2})\2(\d{4})\s*")
_DASHED_IN_TEXT = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
_NINE_IN_TEXT = re.compile(r"(?<![\w-])(\d{3})(\d{2})(\d{4})(?![\w-])")
# fast pre-filter: a value without three digits in a row cannot hold an SSN
_THREE_DIGITS = re.compile(r"\d{3}")
might_hold_ssn = _THREE_DIGITS.search  # most ids, codes and names fail it: nothing more to screen


@dataclass(frozen=True, slots=True)
class ScreeningPolicy:
    nine_digit_ids: bool = True  # refuse undashed 9-digit values with SSN structure in id fields


DEFAULT_POLICY = ScreeningPolicy()


def name_words(name: str) -> list[str]:
    return [w.lower() for w in _WORD_SPLIT.split(name) if w]


@lru_cache(maxsize=8192)
def is_ssn_field(name: str) -> bool:
    """The field's name announces a Social Security number."""
    words = name_words(name)
    if "ssn" in words or "ssns" in words:
        return True
    joined = "".join(words)
    return "socialsecurity" in joined or "socsec" in joined


# Fields that identify organisations, sections or terms, not people. Ed-Fi school ids are often
# nine digits (LEA id + 3), so the undashed nine-digit rule does not apply to them.
_ORG_ID_SUFFIXES = (
    "schoolid",
    "organizationid",
    "agencyid",
    "sectionidentifier",
    "sectioncode",
    "coursecode",
    "classperiodname",
    "schoolsourcedid",
    "classsourcedid",
    "orgsourcedid",
    "orgsourcedids",
    "parentsourcedid",
    "termsourcedids",
    "ncesid",
    "schoolyear",
    "sessionname",
)


@lru_cache(maxsize=8192)
def is_org_id_field(name: str) -> bool:
    return "".join(name_words(name)).endswith(_ORG_ID_SUFFIXES)


def is_ssn_system(system: str) -> bool:
    """An identification-system code or Ed-Fi descriptor that means SSN."""
    code = system.rsplit("#", 1)[-1]
    words = name_words(code)
    return "ssn" in words or "socialsecurity" in "".join(words)


def ssn_in_value(value: str, *, free_text: bool = False, policy: ScreeningPolicy = DEFAULT_POLICY) -> bool:
    """Whether the value is, or (for free text) contains, something shaped like an SSN."""
    if not might_hold_ssn(value):
        return False
    m = _WHOLE.fullmatch(value)
    if m and ssn_structure(m.group(1), m.group(3), m.group(4)) and (m.group(2) or policy.nine_digit_ids or free_text):
        return True
    for m in _DASHED_IN_TEXT.finditer(value):
        if ssn_structure(m.group(1), m.group(3), m.group(4)):
            return True
    if free_text:
        for m in _NINE_IN_TEXT.finditer(value):
            if ssn_structure(m.group(1), m.group(2), m.group(3)):
                return True
    return False


@lru_cache(maxsize=8192)
@lru_cache(maxsize=4096)  # asked for every field of every record; a file has few field names
def safe_field_name(name: str, limit: int = 64) -> str:
    """A field name fit for an error report: never an SSN-shaped key, never unbounded."""
    if ssn_in_value(name, free_text=True):
        return "<a field whose name looks like a Social Security number>"
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in name)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


SSN_MESSAGE = (
    "Social Security numbers are never accepted by Homeroom (NY Ed Law 2-d; the inBloom lesson). "
    "Remove this field or value from the export and send the record again."
)
