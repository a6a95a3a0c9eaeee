"""`POST /v1/districts/{d}/linking-codes` (consent): the codes issued, as the portal, the demo
and a district's mail merge read them; and the letter each one goes out in (written once)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

CSV_COLUMNS = ("district_id", "student_key", "student_name", "relationship", "code", "code_id", "expires_on", "link_at")


class IssuedCode(BaseModel):
    code: str  # shown once: Homeroom keeps only its hash
    code_id: str
    student_key: str
    student_name: str
    relationship: str  # parent, eligible_student
    expires_at: datetime


class IssuedCodes(BaseModel):
    district_id: str
    codes: list[IssuedCode]


def link_address(portal_url: str) -> str:
    return portal_url.rstrip("/") + "/parent/link"


def letter_text(district_id: str, issued: IssuedCode, portal_url: str) -> str:
    """The letter a district sends with one linking code, in plain language."""
    to = (
        f"To {issued.student_name}"
        if issued.relationship == "eligible_student"
        else f"To the parent or guardian of {issued.student_name}"
    )
    whose = "your" if issued.relationship == "eligible_student" else "your child's"
    return "\n".join(
        [
            f"{to} ({district_id})",
            "",
            f"Homeroom is the service {district_id} uses to exchange student records. With it you can see",
            f"{whose} record, every organisation that received any of it and why, and the choices you have made.",
            "",
            f"1. Go to {link_address(portal_url)} and sign in with any e-mail or account you use.",
            f"2. Enter this linking code: {issued.code}",
            "",
            f"The code works once, until {issued.expires_at:%d %B %Y}. If someone else may have seen this letter,",
            f"or if you did not expect it, ask {district_id}'s data office to withdraw the code.",
        ]
    )


def csv_row(district_id: str, issued: IssuedCode, portal_url: str) -> list[str]:
    return [
        district_id,
        issued.student_key,
        issued.student_name,
        issued.relationship,
        issued.code,
        issued.code_id,
        issued.expires_at.date().isoformat(),
        link_address(portal_url),
    ]
