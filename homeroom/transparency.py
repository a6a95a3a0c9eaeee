"""A district's transparency page (issue 24, item 2): the 32 questions a parent asked her district
(seed 001), each answered from what Homeroom knows where it can be, and by the district's own
text where it is a policy question, with the date each answer was last reviewed. A question
with no answer says so, and the page counts the missing ones. Pure: no I/O.

System answers are generated from the agreements in force (consent's public list), the data
dictionary (the catalogue), a year's disclosure counts by recipient and purpose (audit), and the
rules Homeroom enforces; they are "reviewed" on the day they are generated. District answers
come from consent (`PUT /v1/districts/{d}/transparency/{number}`), with who reviewed them when.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from homeroom.catalogue import ELEMENTS, FORBIDDEN
from homeroom.data_dictionary import RETENTION

# The questions, in the parent's order and (shortened) words.
QUESTIONS: tuple[str, ...] = (
    "Which data dashboard system has the district decided to use?",
    "What was the rationale for choosing it, and for not choosing the others?",
    (
        "Is there a list of questions and answers the district put to each vendor before selection? Can the "
        "school community see it?"
    ),
    "How will our students' privacy be protected?",
    "What data is required, and what is optional?",
    "How long will this product be free for districts? What will it cost after that?",
    (
        "What are the long-term plans for sharing student data? How long is it held, with whom is it shared, "
        "how do parents see what was shared, and how are corrections made?"
    ),
    (
        "Can parents and students opt out of the collection and storage of personal information? If so, how? "
        "If not, why not?"
    ),
    (
        "What exact data has been shared with the State Education Department last year and this year, and "
        "what is planned for next year?"
    ),
    "Has the district put any limits on the kinds of data it will collect in the future?",
    "What safeguards has the district placed on electronic student data and on paper documents?",
    "Is the district aware of new state data collection and transmission requirements for this or next school year?",
    (
        "Has the district contacted State Education Department officials about data collection, storage and "
        "mining? What was asked and answered?"
    ),
    "What is the district's understanding of how the system works, and how will it benefit the district?",
    "Who is liable for a breach of district data held by the system or used by a third-party vendor?",
    (
        "With whom is the district's data shared (agencies, vendors, now and in future)? How is that tracked, "
        "how are parents notified, for what purpose, and who approves those contracts?"
    ),
    (
        "How long is data on the district's students held? What happens to the data of a student or family "
        "who leaves the district?"
    ),
    "Did the district offer to share student data voluntarily with vendors for state use rather than district use?",
    "What specific data does the district send, and how is it transmitted? Spell out the fields.",
    "What new data fields is the district required to send this year and next?",
    (
        "If the district opted out of Race to the Top, is parent contact information still sent to the state, "
        "and for what purpose?"
    ),
    "What is the district attorney's view of the provision letting a district withdraw and have its data removed?",
    (
        "Please detail communication about the vendor's statement that it cannot guarantee the security of "
        "the information."
    ),
    "Please cite the federal and state law that requires data collection, and the data each law requires.",
    (
        "What happens when a student transfers? What data is sent to the new district without parent consent? "
        "Medical and special-needs records? Out of state?"
    ),
    "Why must the data collected be personally identifiable to each student? What evidence supports that?",
    (
        "How does this system fit the state's longitudinal database plans, and what is its educational value "
        "to the district?"
    ),
    (
        "Is student data stored in the United States or abroad? Which laws govern it, and what follows from a "
        "breach abroad?"
    ),
    "Why have other states withdrawn from the system?",
    "Who verifies that the state and the vendor remain in compliance with privacy law and the contract?",
    "How is the system funded now and later, and what will it cost the district per student?",
    "What specific data has been shared about my child, with which third parties, and over what period?",
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What Homeroom knows that answers questions."""

    district_id: str
    agreements: Sequence[Mapping[str, Any]]  # consent's public agreements covering the district
    disclosures: Sequence[Mapping[str, Any]]  # audit: {"recipient", "purpose", "count"} over the last year
    portal_url: str
    today: date


@dataclass(frozen=True, slots=True)
class Answer:
    number: int
    question: str
    system: str  # Homeroom's answer from its own data ("" when it has none)
    district: str  # the district's text ("" when not given)
    reviewed_on: str  # the district text's review date, or today for a system-only answer
    reviewed_by: str

    @property
    def missing(self) -> bool:
        return not (self.system or self.district)

    @property
    def needs_district(self) -> bool:
        return self.number not in SYSTEM or self.number in ALSO_DISTRICT


def _join(items: Sequence[str], empty: str = "none") -> str:
    return "; ".join(items) if items else empty


def _agreements(f: Facts) -> str:
    lines = []
    for a in f.agreements:
        purposes = ", ".join(str(p.get("description", p.get("id"))) for p in a.get("purposes", []))
        elements = ", ".join(str(e.get("name", e.get("id"))) for e in a.get("elements", []))
        term = a.get("term", {})
        lines.append(
            f"{a.get('organization')} ({a.get('category')}), {term.get('start_date')} to "
            f"{term.get('end_date') or 'until ended'}: {elements} for {purposes}"
        )
    return _join(lines, "no agreement is in force for this district")


def _counts(f: Facts) -> str:
    if not f.disclosures:
        return "No disclosure of this district's students to a third party was recorded in the last year."
    lines = [
        f"{d.get('recipient')} for {d.get('purpose') or 'no stated purpose'}: {d.get('count')}" for d in f.disclosures
    ]
    return "Disclosures recorded in the last 12 months, by recipient and purpose: " + _join(lines) + "."


def _privacy(f: Facts) -> str:
    return (
        "Names, birth dates and other identifying elements are encrypted (AES-256-GCM, a key per student) "
        "before they leave the district's upload; students are known inside Homeroom by pseudonymous keys. "
        "A vendor receives only the elements its agreement lists, for its purposes, during its term; every "
        "release is written to a tamper-evident log (signed, independently witnessed) that parents can read. "
        f"The elements kept: {f.portal_url}/data-dictionary."
    )


def _kept(f: Facts) -> str:
    names = [e.name for e in ELEMENTS if e.id not in FORBIDDEN]
    return (
        f"Homeroom keeps {len(names)} elements ({_join(names)}); anything else a district's system exports is "
        f"dropped before it is stored. Details per element: {f.portal_url}/data-dictionary."
    )


def _sharing(f: Facts) -> str:
    return (
        f"Agreements in force: {_agreements(f)}. {_retention()} Parents see every disclosure of their child, "
        f"to whom, when, why and under which law, at {f.portal_url} (FERPA 99.32); corrections are asked for there "
        "and decided by the district (FERPA 99.20), and a parent's statement then travels with the record."
    )


def _retention() -> str:
    return "How long it is kept: " + " ".join(f"{group}: {text}." for group, text in RETENTION.items())


def _opt_out(f: Facts) -> str:
    del f
    return (
        "Parents may opt out of directory information (FERPA 99.37), which withholds it from every reader but the "
        "parent and the district, and may give or withdraw written consent for any other sharing (FERPA 99.30). "
        "Sharing the law allows without consent (with a school official under an agreement, or a school the "
        "student enrolls in) cannot be opted out of."
    )


def _limits(f: Facts) -> str:
    del f
    refused = "; ".join(f"{k}: {v}" for k, v in FORBIDDEN.items())
    return f"Never collected: {refused}. An element outside the catalogue is dropped, never stored."


def _safeguards(f: Facts) -> str:
    return _privacy(f) + " Paper records are outside Homeroom."


def _liability(f: Facts) -> str:
    del f
    return (
        "A vendor must report a breach to each district within 7 days, the district to the Chief Privacy Officer "
        "within 10 days and to affected families within 60 days (8 NYCRR 121.10); Homeroom scopes a breach from the "
        "disclosure log (which students, which elements) and tracks each deadline."
    )


def _who(f: Facts) -> str:
    return (
        f"Agreements in force: {_agreements(f)}. {_counts(f)} Every release is tracked in the disclosure log; "
        "parents are notified of transfers by e-mail and on the portal. An agreement releases nothing until "
        "compliance staff activate it with all six Ed Law 2-d answers published."
    )


def _transfer(f: Facts) -> str:
    del f
    stays = [e.name for e in ELEMENTS if not e.transferable]
    return (
        "When a student enrolls in another district, the record is sent to the new school without consent "
        "(FERPA 99.31(a)(2)) and the parent is told (99.34); elements never sent: " + _join(stays) + ". "
        "Each district may exclude more elements; the parent's directory opt-out follows the student. " + _retention()
    )


def _storage(f: Facts) -> str:
    regions = sorted({str(a.get("term", {}).get("storage_region") or "") for a in f.agreements} - {""})
    return (
        "Where recipients store data, as their agreements say: " + _join(regions, "not stated in any agreement") + "."
    )


def _verification(f: Facts) -> str:
    del f
    return (
        "Compliance staff verify the disclosure log against its signed tree heads, which an independent witness "
        "cosigns; anyone with the log's public keys can check an export offline."
    )


def _my_child(f: Facts) -> str:
    return (
        f"Sign in at {f.portal_url} and link your child with the code from the district's letter: the page lists "
        "every disclosure of your child's data, to whom, which elements, when, why and under which law, and "
        "prints as a one-page summary."
    )


SYSTEM: dict[int, Callable[[Facts], str]] = {
    4: _privacy,
    5: _kept,
    7: _sharing,
    8: _opt_out,
    9: _counts,
    10: _limits,
    11: _safeguards,
    15: _liability,
    16: _who,
    17: lambda f: _retention() + " " + _transfer(f),
    19: _kept,
    25: _transfer,
    28: _storage,
    30: _verification,
    32: _my_child,
}
# Questions where the system's answer is only part of it: the district is asked to add its own.
ALSO_DISTRICT = frozenset({5, 9, 11, 15, 16, 28, 30})


def answers(facts: Facts, district_texts: Mapping[int, Mapping[str, Any]]) -> list[Answer]:
    """All 32 answers; `district_texts` maps a question number to {"text", "reviewed_on", "reviewed_by"}."""
    out = []
    for number, question in enumerate(QUESTIONS, 1):
        system = SYSTEM[number](facts) if number in SYSTEM else ""
        own = district_texts.get(number, {})
        text = str(own.get("text") or "")
        out.append(
            Answer(
                number=number,
                question=question,
                system=system,
                district=text,
                reviewed_on=str(own.get("reviewed_on") or "") if text else (facts.today.isoformat() if system else ""),
                reviewed_by=str(own.get("reviewed_by") or "") if text else ("Homeroom" if system else ""),
            )
        )
    return out
