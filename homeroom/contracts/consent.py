"""Consent's decision point as every caller sees it (docs/contracts.md, "Consent"): the request
and answer of `POST /v1/decisions`, `POST /v1/decisions/batch` and `POST /v1/decisions/screen`.

Written once: consent's routes declare their bodies with these models (its OpenAPI document),
its policy (`services/consent/decisions.py`) builds the `Decision`, and every caller (records,
transfer) sends a `DecisionRequest` and reads a `Decision` through `homeroom.contracts.clients.
ConsentClient`. `obligations` says what the caller must do when it releases (notify the parent
of a transfer, FERPA 99.34(a)(1); no redisclosure, FERPA 99.33).
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

POLICY_VERSION = "consent-policy/1"
MAX_BATCH = 1000  # requests in one batch
MAX_SCREEN = 200_000  # students in one screen (a district's whole roster)


class Requester(BaseModel):
    """Who asks, as the caller's token names them."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(min_length=1, max_length=40)
    subject: str = Field(default="", max_length=200)
    organization: str | None = Field(default=None, max_length=300)
    agreement_id: str | None = Field(default=None, max_length=200)
    district_id: str | None = Field(default=None, max_length=100)
    student_keys: list[str] = Field(default_factory=list, max_length=100)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["read", "transfer"]
    requester: Requester
    student_key: str = Field(min_length=1, max_length=200)
    district_id: str = Field(min_length=1, max_length=100)
    school_id: str | None = Field(default=None, max_length=100)
    # The student's classes (or a teacher's), for an agreement limited to certain classes.
    class_ids: list[str] | None = Field(default=None, max_length=1000)
    elements: list[str] = Field(min_length=1, max_length=200)
    purpose: str | None = Field(default=None, max_length=100)
    data_date: date | None = None
    to_district_id: str | None = Field(default=None, max_length=100)


class DecisionBatch(BaseModel):
    """`POST /v1/decisions/batch`: up to `MAX_BATCH` requests, answered in order."""

    model_config = ConfigDict(extra="forbid")

    requests: list[DecisionRequest] = Field(min_length=1, max_length=MAX_BATCH)


class ScreenRequest(BaseModel):
    """Which of these students would a read of `elements` by `requester` release nothing to
    (or not every element of `require`)? For counts a rostering list answers (X-Total-Count,
    Link): decided by the same rules as a decision, but nothing is released on it, so it is
    not logged; the students on the page are then decided (and logged) one by one."""

    model_config = ConfigDict(extra="forbid")

    requester: Requester
    district_id: str = Field(min_length=1, max_length=100)
    elements: list[str] = Field(min_length=1, max_length=200)
    require: list[str] = Field(default_factory=list, max_length=200)
    purpose: str | None = Field(default=None, max_length=100)
    # (student key, school[, classes]): the school (and classes) a decision for the student names
    students: list[tuple[str, str | None] | tuple[str, str | None, list[str] | None]] = Field(max_length=MAX_SCREEN)

    def request_for(self, student_key: str, school_id: str | None, class_ids: list[str] | None) -> DecisionRequest:
        return DecisionRequest(
            action="read",
            requester=self.requester,
            student_key=student_key,
            district_id=self.district_id,
            school_id=school_id,
            class_ids=class_ids,
            elements=self.elements,
            purpose=self.purpose,
        )

    def releases(self, decision: Decision) -> bool:
        return decision.allow and all(e in decision.elements_allowed for e in self.require)


class Withheld(BaseModel):
    element: str
    reason: str


class Decision(BaseModel):
    decision_id: str
    allow: bool
    legal_basis: str | None
    elements_allowed: list[str]
    elements_withheld: list[Withheld]
    reason: str
    # Why nothing was released, as one of DENIAL_CODES (None when something was): the bounded
    # label dashboards and callers group by, where `reason` is the sentence for people.
    denial: str | None = None
    agreement_id: str | None = None
    agreement_version: int | None = None
    purpose: str | None = None
    redisclosure_parties: list[str] = Field(default_factory=list)
    obligations: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)  # ids of the rules that applied, permits then prohibitions
    policy_version: str = POLICY_VERSION

    def releasing(self) -> Decision:
        """The decision as a caller acts on it: an `allow` that releases no element releases
        nothing, and a denial lists no element as allowed (fail closed whatever was sent)."""
        allow = self.allow and bool(self.elements_allowed)
        if allow == self.allow and (allow or not self.elements_allowed):
            return self
        return self.model_copy(update={"allow": allow, "elements_allowed": self.elements_allowed if allow else []})


class DecisionBatchAnswer(BaseModel):
    decisions: list[Decision]


class ScreenAnswer(BaseModel):
    withheld: list[str]  # student keys
