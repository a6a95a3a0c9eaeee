"""The answers the portal reads from the services' person-facing routes (issue 20 item 2).

Each model names the fields a caller reads and keeps every other field it was sent
(`extra="allow"`): a page template shows the answer as the service gave it (`raw()`), while
the caller's own code reads typed attributes. Fields a service may leave out have defaults,
so a missing list is an empty list, never a KeyError.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

JsonObject = dict[str, Any]


class Answer(BaseModel):
    """A service's answer: typed where a caller reads it, everything else kept as sent."""

    model_config = ConfigDict(extra="allow")

    def raw(self) -> JsonObject:
        """The answer as the service sent it (no defaults added): what a template shows."""
        return self.model_dump(exclude_unset=True)


def raw_all(items: list[Any]) -> list[JsonObject]:
    """`raw()` of each answer in a list."""
    return [item.raw() for item in items]


# --- consent -------------------------------------------------------------------------------


class AgreementTerms(Answer):
    end_date: str | None = None


class AgreementVersion(Answer):
    terms: AgreementTerms | None = None


class Agreement(Answer):
    """An agreement as `GET /v1/agreements` lists it (compliance staff)."""

    agreement_id: str
    organization: str = ""
    current: AgreementVersion | None = None


class Agreements(Answer):
    agreements: list[Agreement] = []


class PublicAgreement(Answer):
    """An active agreement as `GET /v1/public/agreements` publishes it (no sign-in)."""

    agreement_id: str
    organization: str = ""
    districts: list[str] = []


class PublicAgreements(Answer):
    agreements: list[PublicAgreement] = []
    awaiting_certification: list[JsonObject] = []

    def covering(self, districts: set[str] | list[str]) -> list[PublicAgreement]:
        """The agreements that cover any of these districts."""
        wanted = set(districts)
        return [a for a in self.agreements if wanted & set(a.districts)]

    def organisations(self) -> dict[str, str]:
        """Each agreement's organisation, by agreement id."""
        return {a.agreement_id: a.organization for a in self.agreements}


class KeyRotation(Answer):
    """`POST /v1/agreements/{id}/keys/rotate`."""

    rotation_id: str


class GuardianLink(Answer):
    student_key: str


class Guardianships(Answer):
    """Guardianship links, and the linking codes issued: a district's (`GET /v1/districts/{d}/guardianships`),
    or the signed-in person's own links (`GET /v1/guardianship/links`, no codes)."""

    links: list[GuardianLink] = []
    codes: list[GuardianLink] = []


class Redemption(Answer):
    """`POST /v1/guardianship/redemptions`: the child the code linked."""

    student_key: str


class GuardianToken(Answer):
    token: str


class TransparencyTexts(Answer):
    """`GET /v1/public/transparency/{d}`: the district's own answers by question number."""

    answers: dict[str, JsonObject] = {}


# --- audit ---------------------------------------------------------------------------------


class EntryPage(Answer):
    """`GET /v1/entries`: one page of the disclosure log."""

    entries: list[JsonObject] = []
    next_after: Any = None


class PublishedKeys(Answer):
    """`GET /v1/keys`: the log's public keys (PEM) by key id."""

    keys: dict[str, str] = {}


class Recipient(Answer):
    organization: str | None = None
    role: str | None = None


class ReleasedElement(Answer):
    id: str = ""
    name: str | None = None


class StudentDisclosure(Answer):
    """One release of a child's data, as the parent's report shows it."""

    when: str | None = None
    recipient: Recipient | None = None
    elements: list[ReleasedElement] | None = None
    purpose: JsonObject | str | None = None
    legal_basis: str | None = None
    agreement_id: str | None = None
    summary: str | None = None


class StudentDisclosures(Answer):
    """`GET /v1/students/{key}/disclosures`."""

    disclosures: list[StudentDisclosure] = []
    own_views: list[JsonObject] = []


class DisclosureCounts(Answer):
    """`GET /v1/public/disclosure-counts/{d}`."""

    counts: list[JsonObject] = []


# --- records -------------------------------------------------------------------------------


class Amendment(Answer):
    id: str = ""
    student_key: str = ""
    status: str = ""
    element: str = ""
    requested_value: Any = None
    reason: Any = None


class Amendments(Answer):
    """`GET /v1/districts/{d}/amendments`."""

    amendments: list[Amendment] = []


class StudentRecord(Answer):
    """A student's record in one district (`GET /v1/districts/{d}/students/{key}`, and each of
    `GET /v1/students/{key}`'s records)."""

    district_id: str | None = None
    elements: JsonObject | None = None
    attendance: JsonObject | None = None
    amendments: list[Amendment] | None = None
    parent_statements: list[JsonObject] | None = None

    def display_name(self) -> str | None:
        """First and last name as the record holds them, or None."""
        elements = self.elements or {}
        first, last = elements.get("student.first_name"), elements.get("student.last_name")
        return " ".join(str(p) for p in (first, last) if p) or None


class StudentRecords(Answer):
    """`GET /v1/students/{key}`: the child's record in every district."""

    records: list[StudentRecord] = []


class ListedStudent(Answer):
    student_key: str


class StudentList(Answer):
    """`GET /v1/districts/{d}/students`."""

    students: list[ListedStudent] = []


# --- ingest --------------------------------------------------------------------------------


class Submission(Answer):
    status: str | None = None


class Submissions(Answer):
    """`GET /v1/districts/{d}/submissions`."""

    submissions: list[Submission] = []


class ProblemPage(Answer):
    """`GET /v1/submissions/{id}/problems`: one page of refused records."""

    problems: list[JsonObject] = []
    next_after: Any = None


# --- transfer ------------------------------------------------------------------------------


class TransferSummary(Answer):
    case_id: str
    student_key: str = ""


class Transfers(Answer):
    """`GET /v1/transfers`."""

    transfers: list[TransferSummary] = []


class TransferStep(Answer):
    step: str | None = None


class TransferCase(Answer):
    """`GET /v1/transfers/{case_id}`."""

    case_id: str = ""
    student_key: str
    to_district_id: str | None = None
    history: list[TransferStep] | None = None

    def step(self, name: str) -> JsonObject | None:
        """The history entry of a step (`acknowledged`, `delivered`), as sent; None before it."""
        found = {h.step: h for h in self.history or []}.get(name)
        return found.raw() if found is not None else None


# --- incidents -----------------------------------------------------------------------------


class Incidents(Answer):
    """`GET /v1/incidents`."""

    incidents: list[JsonObject] = []


class Incident(Answer):
    """`GET /v1/incidents/{id}`."""

    scope_versions: list[JsonObject] | None = None


class OpenedIncident(Answer):
    incident_id: str


class LetterPage(Answer):
    """`GET /v1/incidents/{id}/letters`: one page of the letters sent."""

    letters: list[JsonObject] = []
    next_after: Any = None


class BreachLetters(Answer):
    """`GET /v1/students/{key}/breach-letters`."""

    letters: list[JsonObject] = []


class BreachNotices(Answer):
    """`GET /v1/public/breach-notices`."""

    notices: list[JsonObject] = []


# --- every service that sends notices (homeroom.notices) ---------------------------------


class Notices(Answer):
    """`GET /v1/notices`: the signed-in person's own notices, each as sent (`homeroom/notices.py`)."""

    notices: list[JsonObject] = []
