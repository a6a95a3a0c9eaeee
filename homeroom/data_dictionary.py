"""The public data dictionary (issue 24, item 3): every data element Homeroom keeps, in plain
language, generated from the catalogue (`homeroom.catalogue`, the one source) and the agreements
in force (consent's public list): its group, whether it is directory information, who may
receive it and under which legal basis, for which purposes, and how long it is kept.

Seed 001 asked the district to "literally spell out the fields for everyone to see" (questions
5, 19, 20); this is that list, and it cannot drift from what ingest keeps and records releases,
because it is read from the same catalogue. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeroom.catalogue import ELEMENTS, FORBIDDEN, PURPOSES, DataElement, LegalBasis, Sensitivity

GROUP_NAMES: dict[Sensitivity, str] = {
    Sensitivity.DIRECTORY: "Directory information",
    Sensitivity.IDENTIFIER: "Identifiers",
    Sensitivity.DEMOGRAPHIC: "Demographics",
    Sensitivity.EDUCATIONAL: "Enrollment and education record",
    Sensitivity.ATTENDANCE: "Attendance",
    Sensitivity.DISCIPLINE: "Discipline (dates only)",
    Sensitivity.DISABILITY: "Disability (IEP, 504): IDEA confidentiality too",
    Sensitivity.HEALTH: "Health",
    Sensitivity.ECONOMIC: "Economic (meal eligibility)",
}

# How long each element is kept: records destroys by these groups, per district (records' retention
# routes), counted from the student's last exit; a district's erasure order destroys everything.
RETENTION: dict[str, str] = {
    "record": "with the student's record: until the district's retention period for the record ends after the "
    "student's last exit, or the district orders it erased",
    "attendance": "until the district's retention period for attendance ends after the student's last exit",
    "discipline": "until the district's retention period for discipline ends after the student's last exit",
}


def retention_group(element_id: str) -> str:
    """Which of records' retention groups destroys this element."""
    prefix = element_id.split(".", 1)[0]
    return prefix if prefix in ("attendance", "discipline") else "record"


@dataclass(frozen=True, slots=True)
class Recipient:
    who: str
    legal_basis: str
    purposes: tuple[str, ...] = ()  # plain-language purposes, where the recipient names them


@dataclass(frozen=True, slots=True)
class DictionaryEntry:
    id: str
    name: str
    group: str
    directory: bool
    sealed: bool  # encrypted before it leaves ingest
    transfers: bool  # travels to the school a student enrolls in
    recipients: tuple[Recipient, ...]
    retention: str
    note: str = ""
    agreements: tuple[str, ...] = field(default_factory=tuple)  # organisations receiving it now

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "group": self.group,
            "directory_information": self.directory,
            "encrypted": self.sealed,
            "travels_on_transfer": self.transfers,
            "recipients": [
                {"who": r.who, "legal_basis": r.legal_basis, "purposes": list(r.purposes)} for r in self.recipients
            ],
            "retention": self.retention,
            "received_now_by": list(self.agreements),
            "note": self.note,
        }


def _entry(element: DataElement, agreements: Sequence[Mapping[str, Any]]) -> DictionaryEntry:
    receiving = [a for a in agreements if element.id in {e.get("id") for e in a.get("elements", [])}]
    recipients = [
        Recipient("You, the parent (or the student once eligible)", LegalBasis.PARENT.value),
        Recipient("Your child's district and school staff", "the district's own record"),
    ]
    if element.transferable:
        recipients.append(
            Recipient(
                "A school your child enrolls in",
                LegalBasis.TRANSFER.value,
                (PURPOSES["records_transfer"],),
            )
        )
    for agreement in receiving:
        purposes = tuple(str(p.get("description", p.get("id", ""))) for p in agreement.get("purposes", []))
        recipients.append(
            Recipient(
                f"{agreement.get('organization', '')} (agreement {agreement.get('agreement_id', '')})",
                LegalBasis.SCHOOL_OFFICIAL.value,
                purposes,
            )
        )
    recipients.append(Recipient("An organisation you give written consent to", LegalBasis.WRITTEN_CONSENT.value))
    note = element.description
    if element.sensitivity is Sensitivity.DIRECTORY:
        note = (note + " " if note else "") + (
            "Directory information: you may opt out (FERPA 99.37), and then only you and the district see it "
            "(a transfer still carries it)."
        )
    return DictionaryEntry(
        id=element.id,
        name=element.name,
        group=GROUP_NAMES[element.sensitivity],
        directory=element.sensitivity is Sensitivity.DIRECTORY,
        sealed=element.pii,
        transfers=element.transferable,
        recipients=tuple(recipients),
        retention=RETENTION[retention_group(element.id)],
        note=note,
        agreements=tuple(str(a.get("organization", "")) for a in receiving),
    )


def dictionary(agreements: Sequence[Mapping[str, Any]] = ()) -> list[DictionaryEntry]:
    """Every catalogue element, in catalogue order, with the agreements in force that list it
    (consent's `GET /v1/public/agreements` items)."""
    return [_entry(e, agreements) for e in ELEMENTS]


def never_collected() -> dict[str, str]:
    """What Homeroom refuses to take at all, and why."""
    return dict(FORBIDDEN)
