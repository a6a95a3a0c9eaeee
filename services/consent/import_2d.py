"""Import a published Ed Law 2-d disclosure page into draft agreements. Pure: no I/O but
`read_2d_file`.

The page (seed 003 is a text capture of the NYC DOE one) is a title and an introduction,
then sections ("COVID Testing", "Vendors", "Research"), each a list of entries: the
organisation's name on a line of its own, then its answers to the supplemental-information
questions, each introduced by the question ("1. The exclusive purposes for which ...: answer").
Answers run on over further lines: paragraphs, bullets and the district's bracketed
"[NYC DOE comment: ...]" notes, which belong to the answer above them.

How the parser reads it, and why:
- Questions are recognised by their wording, not their number: the page numbers them
  inconsistently (one entry puts its first question unnumbered and numbers its answer "1.").
- A short stand-alone line that is not a sentence is a heading. A known section name
  ("COVID Testing", "Vendors", "Research", ...) sets the category of the entries below it;
  any other heading inside a section names an organisation, and becomes an entry even
  when no answers follow it (reported). Text that fits no entry is reported, never dropped.
- A question that an entry has already answered, with no heading in between, starts a new
  entry (reported: its name is missing), so two agreements are never merged into one.
- Research entries answer five questions: their fifth asks where data is stored *and*
  whether it is encrypted, so that answer is also the encryption answer, and it is reported
  when it does not mention encryption at all.
- Dates come from the term answer (question 3, with the district's notes): "effective
  October 1, 2019", "March 1, 2019 to June 30, 2024", "7/1/2020", "2020-2021 school year",
  "through June 30, 2023", "expires December 2021" (the last day of that month). A term
  the text states but that is not a date ("starts on signing", "not to exceed seven
  years", "anticipated to end in 2030") is reported for an administrator to settle.
- Two terms are read from the answers, cautiously: the storage region is "US" only when
  the storage answer says the data is stored in the US and names nowhere else; the
  disposition is "return" only when the term answer speaks of returning data and never of
  destroying it (destruction is the default: it is what Homeroom does at the end).
- Every draft is checked with `validate_terms`; a broken rule (an end date before the
  start date, as stated) is reported with its rule id.

Every entry becomes a draft with no data elements and no purposes, so an import releases
nothing until an administrator sets its terms and activates it. Agreement ids are a slug
of the organisation plus a short hash of it, so re-importing the page yields the same
ids, and an edited entry comes back under its old id, ready to be recorded as a new
version. `digests` carries a hash of each entry's text so the service can tell which
entries changed.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementStatus,
    AgreementTerms,
    Disposition,
    SupplementalInformation,
    validate_terms,
)

SOURCE_PREFIX = "import-2d"


@dataclass(frozen=True, slots=True)
class ImportProblem:
    """Something in one entry (or, with entry_index None, in the whole file) that needs a person.

    `entry_index` is the entry's 1-based position on the page, as in the agreement's source;
    `field` is a JSON pointer into the agreement ("/terms/start_date", "/supplemental/encryption").
    """

    entry_index: int | None
    organization: str | None
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    agreements: list[Agreement]
    problems: list[ImportProblem]
    digests: dict[str, str] = field(default_factory=dict)  # agreement id -> sha256 of the entry's text


# ------------------------------------------------------------------ questions

# The six questions, by the supplemental field their answer fills, recognised by wording.
_QUESTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("exclusive_purposes", re.compile(r"the exclusive purposes?\b", re.I)),
    ("subcontractor_oversight", re.compile(r"how you will ensure\b", re.I)),
    ("term_and_expiry", re.compile(r"when the\b.{0,40}\bagreement\b.{0,20}\b(?:starts|expires|ends)\b", re.I)),
    ("accuracy_challenge", re.compile(r"if and how\b.{0,120}\bchallenge\b", re.I)),
    ("storage_and_protections", re.compile(r"(?:whether|where) the\b.{0,40}\bstored\b", re.I)),
    ("encryption", re.compile(r"how the data will be encrypted\b", re.I)),
)
_FIELD_ORDER = [name for name, _ in _QUESTIONS]
_QUESTION_NUMBER = {name: i + 1 for i, name in enumerate(_FIELD_ORDER)}
_NUMBER = re.compile(r"^\(?(\d{1,2})[.)]\s*")
# A prompt ends at its first colon; no prompt on the page is longer than this.
_MAX_PROMPT = 400


@dataclass(frozen=True, slots=True)
class _Question:
    name: str
    prompt: str
    answer: str


def _question(line: str) -> _Question | None:
    body = _NUMBER.sub("", " ".join(line.split()), count=1)
    for name, pattern in _QUESTIONS:
        if pattern.match(body):
            colon = body.find(":")
            if 0 <= colon <= _MAX_PROMPT:
                return _Question(name, body[:colon], body[colon + 1 :].strip())
            if len(body) <= _MAX_PROMPT:
                return _Question(name, body, "")
    return None


# ------------------------------------------------------------------- headings

_KIND_QUALIFIER = r"(?:(?:software|technology|ed[- ]?tech|third[- ]party|other|outside|external)\s+)?"
_SECTIONS: tuple[tuple[re.Pattern[str], AgreementCategory], ...] = (
    (
        re.compile(r"(?:covid(?:-?19)?\s+testing|public[- ]health(?:\s+services?)?|health\s+services?)", re.I),
        AgreementCategory.PUBLIC_HEALTH_SERVICE,
    ),
    (
        re.compile(
            _KIND_QUALIFIER + r"(?:research(?:ers|\s+partners|\s+organizations|\s+studies)?)(?:\s+agreements)?", re.I
        ),
        AgreementCategory.RESEARCH,
    ),
    (
        re.compile(r"(?:audits?|evaluations?|audits? and evaluations?)(?:\s+agreements)?", re.I),
        AgreementCategory.AUDIT_EVALUATION,
    ),
    (
        re.compile(
            _KIND_QUALIFIER + r"(?:vendors?|contractors?|service\s+providers?|providers?)(?:\s+agreements)?", re.I
        ),
        AgreementCategory.VENDOR,
    ),
)
_TRAILER = re.compile(r"^(?:see the full\b.*|back to top)$", re.I)
_MAX_HEADING = 120
_MAX_HEADING_WORDS = 16


def _section(line: str) -> AgreementCategory | None:
    text = " ".join(line.split())
    for pattern, category in _SECTIONS:
        if pattern.fullmatch(text):
            return category
    return None


def _heading_shaped(raw: str) -> bool:
    """A short stand-alone line that is not a question, a bullet, a note or a numbered item."""
    if len(raw) - len(raw.lstrip(" \t")) >= 2:
        return False  # answers and bullets are indented on the page; headings never are
    text = raw.strip()
    if not text or len(text) > _MAX_HEADING or len(text.split()) > _MAX_HEADING_WORDS:
        return False
    if text[0] in "[•·*-–(" or _NUMBER.match(text) or text.endswith((":", ";")):
        return False
    if _TRAILER.match(text) or _question(text) is not None:
        return False
    last_word = text.split()[-1]
    if text.endswith((".", "!", "?")) and last_word[:-1].isalpha() and last_word[:-1].islower():
        return False  # a sentence ("An introduction."), where names end "Inc." or "LLC"
    return any(ch.isalpha() for ch in text)


# --------------------------------------------------------------------- entries


@dataclass
class _Entry:
    index: int
    heading: str | None  # None: the page gave this entry no name
    category: AgreementCategory | None  # None: no section heading above it
    first_line: int
    lines: list[str] = field(default_factory=list)  # every line of the entry, for the digest
    answers: dict[str, list[str]] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    stray: list[str] = field(default_factory=list)  # text before the first question
    current: str | None = None


def _is_binary(text: str) -> bool:
    if not text:
        return False
    odd = sum(1 for ch in text if ch == "\ufffd" or (unicodedata.category(ch) == "Cc" and ch not in "\n\r\t\f"))
    return "\x00" in text or odd > len(text) // 20


def _complete(entry: _Entry) -> bool:
    """Has the entry reached its last question (six on the vendor form, five on the research form)?"""
    if "encryption" in entry.answers:
        return True
    return "storage_and_protections" in entry.answers and "encrypt" in entry.prompts["storage_and_protections"].lower()


@dataclass
class _Page:
    entries: list[_Entry] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)


def _split(text: str) -> _Page:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    page = _Page()
    category: AgreementCategory | None = None
    entry: _Entry | None = None

    def next_content(i: int) -> str | None:
        for later in lines[i + 1 :]:
            if later.strip() and not _TRAILER.match(later.strip()):
                return later
        return None

    def start(heading: str | None, at: int) -> _Entry:
        new = _Entry(index=len(page.entries) + 1, heading=heading, category=category, first_line=at)
        page.entries.append(new)
        return new

    for i, raw in enumerate(lines):
        text = " ".join(raw.split())
        if not text:
            continue
        if _TRAILER.match(text):
            if entry is not None:
                entry.lines.append(text)
            continue
        q = _question(raw)
        if q is None and (i == 0 or not lines[i - 1].strip()) and _heading_shaped(raw):
            following = next_content(i)
            follow_q = _question(following) if following is not None else None
            known = _section(text)
            if follow_q is None and known is not None:
                # A section: its name says what kind of agreement its entries are.
                category = known
                entry = None
                continue
            if follow_q is not None:
                if (
                    entry is None
                    or entry.current is None
                    or follow_q.name == "exclusive_purposes"
                    or follow_q.name in entry.answers
                ):
                    entry = start(text, i + 1)
                    entry.lines.append(text)
                    continue
            elif entry is None and not page.entries and (category is None or following is None):
                continue  # before any section or entry: the page's title and introduction
            elif entry is None or following is None or _complete(entry) or _heading_shaped(following):
                # A name over text that answers no question, over another name, or at the very
                # end: still an entry, reported as having no answers.
                entry = start(text, i + 1)
                entry.lines.append(text)
                continue
            if entry is not None and entry.current is not None:
                # Read as a short paragraph of the answer above, but say so: it may be a name.
                page.problems.append(
                    ImportProblem(
                        entry.index,
                        entry.heading,
                        f"/supplemental/{entry.current}",
                        f"Line {i + 1} {text!r} looks like a heading but was read as part of this answer.",
                    )
                )
        if q is not None:
            if entry is None or q.name in entry.answers:
                entry = start(None, i + 1)  # reported when the entry is built
            entry.lines.append(text)
            entry.answers[q.name] = [q.answer] if q.answer else []
            entry.prompts[q.name] = q.prompt
            entry.current = q.name
            continue
        if entry is None:
            if page.entries:
                page.problems.append(
                    ImportProblem(
                        None, None, "/", f"Line {i + 1} is outside any entry and was not imported: {text[:120]!r}"
                    )
                )
            continue  # before the first entry: the page's introduction
        entry.lines.append(text)
        if entry.current is None:
            entry.stray.append(text)
        elif entry.answers[entry.current]:
            entry.answers[entry.current].append(text)
        else:
            # The question's own line had no answer, so a number here is list formatting
            # ("The exclusive purposes ...:" then "1. Processor will use ...").
            entry.answers[entry.current].append(_NUMBER.sub("", text, count=1))
    return page


# ----------------------------------------------------------------------- dates

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_MON = r"(?P<mon>[A-Z][A-Za-z]{2,8})\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "school_year",
        re.compile(r"\b(?:SY\s*)?(?P<y1>\d{4})\s*[-–—/]\s*(?P<y2>\d{4}|\d{2})\s+(?:school|academic)\s+year\b"),
    ),
    ("school_year", re.compile(r"\bSY\s*(?P<y1>\d{4})\s*[-–—/]\s*(?P<y2>\d{4}|\d{2})\b")),
    ("iso", re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})\b")),
    ("mdy", re.compile(rf"\b{_MON}\s+{_DAY},?\s+{_YEAR}\b")),
    ("dmy", re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MON},?\s+{_YEAR}\b")),
    ("numeric", re.compile(r"\b(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4}|\d{2})\b")),
    ("my", re.compile(rf"\b{_MON},?\s+{_YEAR}\b")),
)
_START_WORDS = re.compile(
    r"\b(?:effective|begin|begins|began|beginning|start|starts|started|starting|commenc\w*|from|as of|since|signed|"
    r"dated)\b",
    re.I,
)
_END_WORDS = re.compile(
    r"\b(?:expire|expires|expired|expiring|expiration|end|ends|ended|ending|terminat\w*|through|thru|until|till|to|"
    r"no later than|before)\b",
    re.I,
)
_RANGE_JOIN = re.compile(r"\s*(?:to|through|thru|until|till|and ending(?: on)?|[-–—])\s*(?:on\s+)?", re.I)
# A stated term that is not a date, for the administrator to settle.
_VAGUE_START = re.compile(
    r"\b(?:effective|begins?|starts?|starting|commenc\w*)\s+(?:starting\s+)?(?:on|as of|in|upon)\s+"
    r"(?P<what>[^.,;\]\[]{1,40})",
    re.I,
)
_VAGUE_END = [
    re.compile(
        r"\b(?:expires?|ends?|terminates?)\s+(?:on|in|as of|at)\s+(?P<what>[^.,;\]\[]{1,40})",
        re.I,
    ),
    # "not to exceed seven years": the term's length, not the days allowed for deleting data.
    re.compile(r"\bnot to exceed\s+(?P<what>\w+\s+(?:years?|months?)\b[^.,;\]\[]{0,30})", re.I),
    re.compile(r"\b(?:extend|last|run)s?\s+(?P<what>no (?:more|longer) than\s+[^.,;\]\[]{1,30})", re.I),
]


@dataclass(frozen=True, slots=True)
class _DateMention:
    start: int
    end: int
    text: str
    kind: str  # a key of _DATE_PATTERNS
    first: date | None  # the day the mention stands for when it opens a term
    last: date | None  # ... and when it closes one (they differ for a month or a school year)
    error: str | None
    in_note: bool  # inside the district's bracketed note, trusted over the recipient's text


def _in_note(text: str, pos: int) -> bool:
    opened = text.rfind("[", 0, pos)
    return opened != -1 and text.rfind("]", 0, pos) < opened


def _mentions(text: str) -> list[_DateMention]:
    found: list[_DateMention] = []
    for kind, pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < d.end and d.start < m.end() for d in found):
                continue  # already read by a more specific pattern
            mention = _mention(kind, m, text)
            if mention is not None:
                found.append(mention)
    return sorted(found, key=lambda d: d.start)


def _last_of_month(year: int, month: int) -> date:
    if month == 12:
        return date(year, 12, 31)
    return date(year, month + 1, 1) - timedelta(days=1)


def _mention(kind: str, m: re.Match[str], text: str) -> _DateMention | None:
    def make(first: date | None, last: date | None, error: str | None = None) -> _DateMention:
        return _DateMention(m.start(), m.end(), m.group(0), kind, first, last, error, _in_note(text, m.start()))

    g = m.groupdict()
    if kind == "school_year":
        y1, y2 = int(g["y1"]), int(g["y2"])
        if y2 < 100:
            y2 += y1 - y1 % 100
        if y2 != y1 + 1 or y1 < 1:
            return make(None, None, f"{m.group(0)!r} is not a school year (its years must follow each other)")
        # New York's school year runs from July 1 to June 30 (Education Law 2(15)).
        try:
            return make(date(y1, 7, 1), date(y2, 6, 30))
        except ValueError:
            return make(None, None, f"{m.group(0)!r} is not a school year")
    if kind in ("mdy", "dmy", "my"):
        month = _MONTHS.get(g["mon"].lower())
        if month is None:
            return None  # a capitalised word that is not a month: no date here
        year = int(g["year"])
        if year < 1:
            return make(None, None, f"{m.group(0)!r} is not a calendar date")
        if kind == "my":
            return make(date(year, month, 1), _last_of_month(year, month))
        day = int(g["day"])
    else:
        month, day, year = int(g["month"]), int(g["day"]), int(g["year"])
        if kind == "numeric" and len(g["year"]) == 2:
            year += 2000
    try:
        value = date(year, month, day)
    except ValueError:
        return make(None, None, f"{m.group(0)!r} is not a calendar date")
    return make(value, value)


def _role(text: str, mention: _DateMention) -> str | None:
    """'start', 'end' or None, from the nearest term word before the date, in its clause."""
    window = text[max(0, mention.start - 80) : mention.start]
    cut = max(window.rfind(". "), window.rfind("["), window.rfind("]"), window.rfind(": "), window.rfind("\n"))
    if cut != -1:
        window = window[cut + 1 :]
    last_start = max((m.end() for m in _START_WORDS.finditer(window)), default=-1)
    last_end = max((m.end() for m in _END_WORDS.finditer(window)), default=-1)
    if last_start == last_end == -1:
        return None
    return "start" if last_start > last_end else "end"


@dataclass
class TermDates:
    start: date | None = None
    end: date | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (JSON pointer, message)


def parse_term_dates(text: str) -> TermDates:
    """The start and end dates a term answer states, and what it states that is not a date."""
    result = TermDates()
    mentions = _mentions(text)
    starts: list[_DateMention] = []
    ends: list[_DateMention] = []
    i = 0
    while i < len(mentions):
        mention = mentions[i]
        following = mentions[i + 1] if i + 1 < len(mentions) else None
        if mention.error is not None:
            where = f"/terms/{_role(text, mention) or 'start'}_date"
            result.problems.append((where, f"Could not read a date: {mention.error}."))
        elif (
            following is not None
            and following.error is None
            and _RANGE_JOIN.fullmatch(text[mention.end : following.start])
        ):
            starts.append(mention)  # "March 1, 2019 to June 30, 2024"
            ends.append(following)
            i += 2
            continue
        else:
            role = _role(text, mention)
            if role == "start":
                starts.append(mention)
            elif role == "end":
                ends.append(mention)
            elif mention.kind == "school_year":
                starts.append(mention)  # "for the 2020-2021 school year": the whole year
                ends.append(mention)
            else:
                result.problems.append(
                    (
                        "/terms/start_date",
                        f"The term mentions {mention.text!r} without saying whether the agreement starts or ends "
                        "then; not used.",
                    )
                )
        i += 1

    result.start = _pick(starts, "start", result.problems)
    result.end = _pick(ends, "end", result.problems)

    if result.start is None:
        vague = _VAGUE_START.search(text)
        if vague is not None and not _mentions(vague.group("what")):
            message = f"The term says it starts {vague.group(0).strip()!r}, which is not a date; set the start date."
        else:
            message = "The term states no start date; set it by hand."
        if not any(where == "/terms/start_date" for where, _ in result.problems):
            result.problems.append(("/terms/start_date", message))
    if result.end is None:
        for pattern in _VAGUE_END:
            vague = pattern.search(text)
            if vague is not None and not _mentions(vague.group("what")):
                result.problems.append(
                    (
                        "/terms/end_date",
                        f"The term limits the agreement ({vague.group(0).strip()!r}) but gives no end date; set it "
                        "by hand.",
                    )
                )
                break
    return result


def _pick(candidates: list[_DateMention], role: str, problems: list[tuple[str, str]]) -> date | None:
    values = [(c.first if role == "start" else c.last, c.in_note) for c in candidates]
    dated = [(v, in_note) for v, in_note in values if v is not None]
    if not dated:
        return None
    # The district's own note says when the agreement it signed took effect; prefer it.
    noted = [v for v, in_note in dated if in_note]
    chosen = noted[0] if noted else dated[0][0]
    distinct = sorted({v for v, _ in dated})
    if len(distinct) > 1:
        problems.append(
            (
                f"/terms/{role}_date",
                f"The term states several {role} dates ({', '.join(d.isoformat() for d in distinct)}); "
                f"used {chosen.isoformat()}.",
            )
        )
    return chosen


# ------------------------------------------------------------ other inferences

_US = re.compile(
    # "sorted" is on the page: a typo for "stored" (EverFi).
    r"\b(?:stored|housed|hosted|kept|contained|sorted|stores?)\b[^.]{0,60}?"
    r"\b(?:US|U\.S\.?|USA|United States|contiguous 48 states)\b",
    re.I,
)
_ELSEWHERE = re.compile(
    r"\b(?:United Kingdom|UK|Germany|Canada|Europe|EU|India|Ireland|Australia|outside (?:of )?the (?:US|U\.S\.))\b"
)
_DESTROY = re.compile(r"\b(?:destroy\w*|destruction|delet\w*|erase\w*|purg\w*|shred\w*|wiped?|sanitiz\w*)\b", re.I)
_RETURN = re.compile(r"\b(?:return\w*|surrender\w*)\b", re.I)
_ENCRYPTION_WORDS = re.compile(r"encrypt|cipher|\bTLS\b|\bSSL\b|\bSSH\b|\bAES\b|HTTPS|SFTP", re.I)
_RESEARCH_HINT = re.compile(r"\b(?:research|study|studies|evaluation|evaluate)\b", re.I)
_HEALTH_HINT = re.compile(r"\b(?:covid|testing|immuniz\w*|public health|clinic)\b", re.I)


def _storage_region(answer: str) -> str | None:
    if _US.search(answer) and not _ELSEWHERE.search(answer):
        return "US"
    return None


def _disposition(answer: str) -> Disposition:
    if _RETURN.search(answer) and not _DESTROY.search(answer):
        return Disposition.RETURN
    return Disposition.DESTROY


def _slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60].strip("-") or "agreement"


def agreement_id(organization: str, occurrence: int = 1) -> str:
    """Stable id for the `occurrence`-th entry of this organisation on a page."""
    name = " ".join(organization.split()).casefold()
    digest = hashlib.sha256(f"{name}\n{occurrence}".encode()).hexdigest()[:8]
    return f"{_slug(organization)}-{digest}"


# ------------------------------------------------------------------------ build


def _answer(lines: list[str]) -> str:
    return "\n".join(lines).strip()


def _build(
    entry: _Entry,
    *,
    source_name: str,
    recorded_by: str,
    recorded_at: datetime,
    districts: tuple[str, ...],
    occurrence: int,
) -> tuple[Agreement, list[ImportProblem]]:
    organization = entry.heading or f"Unnamed organisation (entry {entry.index})"
    problems: list[ImportProblem] = []

    def report(where: str, message: str) -> None:
        problems.append(ImportProblem(entry.index, entry.heading or organization, where, message))

    if entry.heading is None:
        report(
            "/organization",
            f"No organisation heading above this entry (line {entry.first_line}); named {organization!r} until "
            "someone names it.",
        )
    if occurrence > 1:
        report("/organization", f"{organization!r} appears {occurrence} times on the page; check it is not a copy.")
    if entry.stray:
        report("/", f"Text before the first question was not understood: {entry.stray[0][:120]!r}")

    answers = {name: _answer(lines) for name, lines in entry.answers.items()}
    if "encryption" not in entry.answers and "encrypt" in entry.prompts.get("storage_and_protections", "").lower():
        # The five-question (research) form asks about encryption in its storage question.
        answers["encryption"] = answers["storage_and_protections"]
        if not _ENCRYPTION_WORDS.search(answers["encryption"]):
            report(
                "/supplemental/encryption",
                "The storage answer was asked whether data is encrypted and does not say; ask the recipient.",
            )
    if not entry.answers:
        kind = f"the category of the section above ({entry.category.value})" if entry.category else "no category"
        report(
            "/supplemental",
            "None of the six questions was found under this heading. If the file was cut short, import it again "
            f"whole; if this is the name of a section, the entries below it were given {kind}.",
        )
    for name in _FIELD_ORDER if entry.answers else ():
        if name not in answers:
            report(
                f"/supplemental/{name}",
                f"Question {_QUESTION_NUMBER[name]} ({name.replace('_', ' ')}) was not found in this entry.",
            )
        elif not answers[name]:
            report(f"/supplemental/{name}", f"The answer to question {_QUESTION_NUMBER[name]} is empty.")

    category = entry.category
    if category is None:
        category = AgreementCategory.VENDOR
        text = " ".join(entry.lines)
        hint = None
        if _RESEARCH_HINT.search(text):
            hint = "research or evaluation"
        elif _HEALTH_HINT.search(text):
            hint = "a public-health service"
        if hint is not None:
            report(
                "/category",
                f"No section says what kind of agreement this is; recorded as vendor, but the text suggests {hint}.",
            )

    term_text = answers.get("term_and_expiry", "")
    dates = parse_term_dates(term_text)
    if "term_and_expiry" in answers:
        for where, message in dates.problems:
            report(where, message)

    terms = AgreementTerms(
        districts=districts,
        start_date=dates.start,
        end_date=dates.end,
        storage_region=_storage_region(answers.get("storage_and_protections", "")),
        disposition=_disposition(term_text),
    )
    for error in validate_terms(terms):
        report(error.field, f"{error.message} [{error.rule}]")

    agreement = Agreement(
        id=agreement_id(organization if entry.heading else f"{source_name} entry {entry.index}", occurrence),
        version=1,
        organization=organization,
        category=category,
        supplemental=SupplementalInformation(**{name: answers.get(name, "") for name in _FIELD_ORDER}),
        terms=terms,
        status=AgreementStatus.DRAFT,
        source=f"{SOURCE_PREFIX}:{source_name}#{entry.index}",
        recorded_by=recorded_by,
        recorded_at=recorded_at,
    )
    return agreement, problems


def parse_2d(
    text: str,
    *,
    source_name: str,
    recorded_by: str,
    recorded_at: datetime,
    districts: tuple[str, ...] = (),
) -> ImportResult:
    """Every entry of a disclosure page as a draft agreement, and every problem by entry.

    Never raises on the page's content. `districts` fills the drafts' covered districts
    (the page is one district's); `recorded_at` must carry a time zone.
    """
    if _is_binary(text):
        return ImportResult(
            [],
            [ImportProblem(None, None, "/", f"{source_name} is not a text page (binary content); nothing imported.")],
        )
    page = _split(text)
    problems = list(page.problems)
    agreements: list[Agreement] = []
    digests: dict[str, str] = {}
    seen: dict[str, int] = {}
    for entry in page.entries:
        key = " ".join((entry.heading or "").split()).casefold()
        seen[key] = seen.get(key, 0) + 1
        agreement, entry_problems = _build(
            entry,
            source_name=source_name,
            recorded_by=recorded_by,
            recorded_at=recorded_at,
            districts=districts,
            occurrence=seen[key] if entry.heading else 1,
        )
        agreements.append(agreement)
        problems.extend(entry_problems)
        digests[agreement.id] = hashlib.sha256("\n".join(entry.lines).encode()).hexdigest()
    if not page.entries:
        problems.append(
            ImportProblem(
                None,
                None,
                "/",
                f"No agreements were found in {source_name}: nothing in it answers the Ed Law 2-d questions.",
            )
        )
    # File-level problems first, then entry by entry, each entry's in the order found.
    problems.sort(key=lambda p: -1 if p.entry_index is None else p.entry_index)
    return ImportResult(agreements, problems, digests)


def read_2d_file(path: Path) -> str:
    """The page's text. Undecodable bytes become U+FFFD, which `parse_2d` reports as binary."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return raw.decode("utf-8", errors="replace")


def import_2d_file(
    path: Path, *, recorded_by: str, recorded_at: datetime, districts: tuple[str, ...] = ()
) -> ImportResult:
    """Read and parse a page; the source names the file, not its directory, so ids and
    sources do not depend on where the file was saved. OSError if it cannot be read."""
    return parse_2d(
        read_2d_file(path),
        source_name=path.name,
        recorded_by=recorded_by,
        recorded_at=recorded_at,
        districts=districts,
    )
