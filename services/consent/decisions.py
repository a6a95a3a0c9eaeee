"""The decision point's policy: who may receive which elements of a student's record, for which
purpose, under which legal basis. Pure: no I/O.

This is the one engine that decides, for every caller: records' reads and rostering lists,
and the transfer service's choice of what to withhold (services/transfer/application/withholding.py keeps its
answer as given). Why this engine and not Cedar, with the timings: docs/policy.md. The
facts it reads are gathered in one place (`Facts`, filled by facts.py
`DecisionFacts.for_request`); what it knows of each element (sensitivity, transferable,
forbidden) is the catalogue's (homeroom/catalogue.py).

The rules are the table `RULES` below, in the order they are tried; each names the legal
basis it rests on, so an auditor reads them here (and at `GET /v1/policy`, and in
docs/policy.md) rather than in branches spread over the code. Deny is the default: a
request no rule permits is denied. Prohibitions (`PROHIBITIONS`) are applied after every
permission and win over all of them, written consent included. `policy.cedar` restates the
same rules in Cedar; a test oracle runs it against this module on generated requests.

The request and answer are the contract's models (`homeroom/contracts/consent.py`,
docs/contracts.md `POST /v1/decisions`), written once for consent and its callers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from homeroom.catalogue import CATALOGUE, FORBIDDEN, LegalBasis, Sensitivity
from homeroom.contracts.consent import POLICY_VERSION, Decision, DecisionRequest, Withheld
from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementStatus,
    current_status,
    governing_version,
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: Literal["permit", "forbid"]
    when: str
    grants: str
    legal_basis: str | None


RULES: tuple[Rule, ...] = (
    Rule(
        "parent-inspection",
        "permit",
        "requester.role is parent, the student's key is one of requester.student_keys, and the requester's "
        "guardianship link to the student in this district is active (a requester the registry does not know: "
        "the token's claim)",
        "every requested catalogue element",
        LegalBasis.PARENT.value,
    ),
    Rule(
        "owning-district-staff",
        "permit",
        "requester.role is district_staff or school_staff and requester.district_id is the owning district",
        "every requested catalogue element (no disclosure: the district's own staff)",
        LegalBasis.SCHOOL_OFFICIAL.value,
    ),
    Rule(
        "transfer-to-enrolling-school",
        "permit",
        "action is transfer and to_district_id names another district",
        "requested elements the catalogue marks transferable, less those the owning district excludes; the "
        "parent must be notified (99.34)",
        LegalBasis.TRANSFER.value,
    ),
    Rule(
        "agreement",
        "permit",
        "requester.role is vendor; requester.agreement_id names an agreement that is active, whose governing "
        "version covers the district (and school, when it lists schools; and one of the student's classes, "
        "when it lists classes), whose term contains today and the "
        "data_date, and which permits the purpose",
        "requested elements the governing version lists. Categories vendor, research and audit-evaluation "
        "rest on FERPA exceptions; public-health service and other need written consent for each student",
        "by category: vendor 99.31(a)(1), research 99.31(a)(6), audit-evaluation 99.31(a)(3), "
        "public-health service and other 99.30",
    ),
    Rule(
        "written-consent",
        "permit",
        "a parent gave written consent to the requester's agreement for this student and district, not "
        "withdrawn, not past valid_until, for the purpose (when it names one), and the agreement permits the request",
        "the elements the consent names",
        LegalBasis.WRITTEN_CONSENT.value,
    ),
)

PROHIBITIONS: tuple[Rule, ...] = (
    Rule(
        "forbidden-element",
        "forbid",
        "the element is one Homeroom never shares (catalogue FORBIDDEN) or not in the catalogue",
        "withheld from everyone",
        None,
    ),
    Rule(
        "directory-opt-out",
        "forbid",
        "the parent opted the student out of directory information in the owning district and has not rescinded",
        "directory elements withheld from everyone but the parent and the owning district's staff",
        None,
    ),
)

# A vendor's legal basis by agreement category. None: no FERPA exception, consent needed.
_CATEGORY_BASIS: dict[AgreementCategory, LegalBasis | None] = {
    AgreementCategory.VENDOR: LegalBasis.SCHOOL_OFFICIAL,
    AgreementCategory.RESEARCH: LegalBasis.STUDY,
    AgreementCategory.AUDIT_EVALUATION: LegalBasis.AUDIT_EVALUATION,
    AgreementCategory.PUBLIC_HEALTH_SERVICE: None,
    AgreementCategory.OTHER: None,
}
_CATEGORY_OBLIGATIONS: dict[AgreementCategory, tuple[str, ...]] = {
    AgreementCategory.VENDOR: (
        "use only for the agreement's purposes and under the district's direct control (FERPA 99.31(a)(1)(i)(B))",
        "no redisclosure (FERPA 99.33)",
    ),
    AgreementCategory.RESEARCH: (
        "use only for the study; destroy when no longer needed for it (FERPA 99.31(a)(6)(iii)(C))",
        "no personal identification of parents and students by anyone but the study's representatives",
    ),
    AgreementCategory.AUDIT_EVALUATION: (
        "use only for the audit or evaluation; destroy when no longer needed (FERPA 99.35(b))",
    ),
    AgreementCategory.PUBLIC_HEALTH_SERVICE: ("use only as the parent's written consent states (FERPA 99.30)",),
    AgreementCategory.OTHER: ("use only as the parent's written consent states (FERPA 99.30)",),
}
_TRANSFER_OBLIGATIONS = ("notify the parent of the transfer and offer a copy and a hearing (FERPA 99.34(a)(1))",)
_OPT_OUT_TRAVELS = (
    "carry the parent's directory-information opt-out to the receiving district, where it applies until the "
    "parent changes it (FERPA 99.37)"
)


# Every value `Decision.denial` takes, with what it means (also at GET /v1/policy).
DENIAL_CODES: dict[str, str] = {
    "no_rule_permits": "no rule permits this requester to read the student's record",
    "agreement_unknown": "the requester's agreement is not on record",
    "agreement_ended": "the agreement has ended",
    "agreement_draft": "the agreement is a draft",
    "agreement_suspended": "the agreement is suspended",
    "outside_term": "today, or the data's date, is outside the agreement's term",
    "district_not_covered": "the agreement does not cover the student's district",
    "school_not_covered": "the agreement does not cover the student's school (or it is not known)",
    "class_not_covered": "the agreement is for certain classes, none of them the student's (or they are not known)",
    "purpose_not_permitted": "the agreement does not permit the purpose",
    "transfer_not_lawful": "the transfer request is not one the law allows",
    "nothing_releasable": "a rule applied but every element asked for was withheld",
    "guardianship_pending": "the parent's link was carried to this district by a transfer and awaits its acceptance",
    "guardianship_ended": "the parent's link to the student in this district was revoked or declined",
    "guardianship_absent": "the parent has no guardianship link to the student in this district",
}


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """A written consent as the policy sees it (already filtered to the student and district)."""

    consent_id: str
    recipient: str
    elements: frozenset[str]
    purpose: str | None
    valid_until: date | None


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the store knows that the rules need, loaded for one request."""

    today: date
    history: Sequence[Agreement] = ()  # versions of the requester's agreement, if any
    ended_on: date | None = None  # when the requester's agreement ended, if it did
    directory_opt_out: bool = False
    consents: Sequence[ConsentGrant] = ()
    not_transferable: frozenset[str] = frozenset()  # the owning district's transfer exclusions
    # Parents only: the requester's guardianship link to this student in this district (its
    # status, or None), and whether the registry knows the requester at all (a person whose
    # token consent signed from their links). A requester it does not know (a development
    # token, another trusted issuer's claim) is taken at the token's word, as before issue 24.
    guardianship: str | None = None
    guardian_registered: bool = False


def guardianship_refusal(facts: Facts, district_id: str) -> tuple[str, str] | None:
    """Why a parent whose token names the student may not inspect the record in this district
    (denial code and reason), or None when they may. A link is honoured only where it is active:
    a link a transfer carried authorises nothing in the receiving district until it accepts it."""
    if not facts.guardian_registered or facts.guardianship == "active":
        return None
    if facts.guardianship == "proposed":
        return "guardianship_pending", f"the parent's link carried to {district_id} awaits that district's acceptance"
    if facts.guardianship in ("revoked", "declined"):
        return "guardianship_ended", f"the parent's link to the student in {district_id} was {facts.guardianship}"
    return "guardianship_absent", f"the parent has no guardianship link to the student in {district_id}"


@dataclass
class _Outcome:
    allowed: list[str] = field(default_factory=list)
    withheld: list[Withheld] = field(default_factory=list)


def _deny(
    request: DecisionRequest,
    code: str,
    reason: str,
    *,
    agreement: Agreement | None = None,
    agreement_id: str | None = None,
    rules: Sequence[str] = (),
) -> Decision:
    withheld = [Withheld(element=e, reason=reason) for e in dict.fromkeys(request.elements)]
    return _answer(request, [], withheld, None, reason, code, rules, agreement=agreement, agreement_id=agreement_id)


class DecisionIds:
    """Random (version 4) UUIDs as text, cut from `os.urandom` 8 KiB (or a batch's worth) at a
    time: `uuid.uuid4()` asks the kernel for 16 bytes and builds a UUID object for each id, 4-5
    times the CPU, and a batch of 1,000 decisions takes 1,000 of them."""

    def __init__(self) -> None:
        self._random = b""
        self._at = 0
        self._lock = threading.Lock()  # the rules are pure: a caller may decide in threads

    def __call__(self) -> str:
        with self._lock:
            if self._at >= len(self._random):
                self._random, self._at = os.urandom(8192), 0
            raw = bytearray(self._random[self._at : self._at + 16])
            self._at += 16
        raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
        raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 9562 variant
        h = raw.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def many(self, n: int) -> list[str]:
        """`n` ids at once: the version and variant bits set on every id in two slice operations."""
        return _as_uuids(os.urandom(16 * n))


_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_RFC_9562_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def _as_uuids(random: bytes) -> list[str]:
    """Version 4 UUIDs as text from 16 random bytes each."""
    raw = bytearray(random)
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_9562_VARIANT)
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, len(h), 32)
    ]


new_decision_id = DecisionIds()


def _answer(
    request: DecisionRequest,
    allowed: list[str],
    withheld: list[Withheld],
    basis: LegalBasis | None,
    reason: str,
    denial: str | None,
    rules: Sequence[str],
    *,
    agreement: Agreement | None = None,
    agreement_id: str | None = None,
    purpose: str | None = None,
    obligations: Sequence[str] = (),
) -> Decision:
    """The one place a decision is made up, permit or deny: its id, agreement and purpose."""
    return Decision(
        decision_id=new_decision_id(),
        allow=bool(allowed),
        legal_basis=basis.value if basis is not None else None,
        elements_allowed=allowed,
        elements_withheld=withheld,
        reason=reason,
        denial=denial,
        agreement_id=agreement.id if agreement is not None else agreement_id,
        agreement_version=agreement.version if agreement is not None else None,
        purpose=purpose if purpose is not None else request.purpose,
        obligations=list(obligations),
        rules=list(rules),
    )


def _screen(requested: Sequence[str]) -> tuple[list[str], list[Withheld]]:
    """Catalogue elements in request order (duplicates dropped), and the others withheld."""
    known: list[str] = []
    withheld: list[Withheld] = []
    for element_id in dict.fromkeys(requested):
        if element_id in FORBIDDEN:
            withheld.append(Withheld(element=element_id, reason=f"never shared: {FORBIDDEN[element_id]}"))
        elif element_id not in CATALOGUE:
            withheld.append(Withheld(element=element_id, reason="not in the data-element catalogue"))
        else:
            known.append(element_id)
    return known, withheld


def _apply_opt_out(outcome: _Outcome, facts: Facts, rules: list[str]) -> None:
    if not facts.directory_opt_out:
        return
    kept = []
    for element_id in outcome.allowed:
        if CATALOGUE[element_id].sensitivity is Sensitivity.DIRECTORY:
            outcome.withheld.append(
                Withheld(element=element_id, reason="the parent opted out of directory information")
            )
        else:
            kept.append(element_id)
    if len(kept) != len(outcome.allowed):
        rules.append("directory-opt-out")
    outcome.allowed = kept


def decide(request: DecisionRequest, facts: Facts) -> Decision:
    """Permit or deny `request` on `facts`. Never raises on the request's content."""
    requester = request.requester
    known, withheld = _screen(request.elements)
    rules: list[str] = ["forbidden-element"] if withheld else []

    # Parent inspection, and the owning district's own staff: everything known.
    if requester.role == "parent" and request.student_key in requester.student_keys:
        refusal = guardianship_refusal(facts, request.district_id)
        if refusal is not None:
            return _deny(request, *refusal, rules=["parent-inspection"])
        return _permit(
            request,
            known,
            withheld,
            LegalBasis.PARENT,
            "the requester is a parent of the student",
            rules=["parent-inspection", *rules],
        )
    if requester.role in ("district_staff", "school_staff") and requester.district_id == request.district_id:
        return _permit(
            request,
            known,
            withheld,
            LegalBasis.SCHOOL_OFFICIAL,
            f"the requester is staff of the owning district {request.district_id}",
            rules=["owning-district-staff", *rules],
        )

    if request.action == "transfer":
        return _transfer(request, facts, known, withheld, rules)
    if requester.role == "vendor" and requester.agreement_id:
        return _vendor(request, facts, known, withheld, rules)
    return _deny(request, "no_rule_permits", f"no rule permits a {requester.role} to read this student's record")


def _permit(
    request: DecisionRequest,
    allowed: list[str],
    withheld: list[Withheld],
    basis: LegalBasis,
    reason: str,
    *,
    rules: list[str],
    agreement: Agreement | None = None,
    purpose: str | None = None,
    obligations: Sequence[str] = (),
) -> Decision:
    if not allowed:
        why = f"nothing requested may be released ({reason})"
        return _answer(
            request, [], withheld, None, why, "nothing_releasable", rules, agreement=agreement, purpose=purpose
        )
    return _answer(
        request,
        allowed,
        withheld,
        basis,
        reason,
        None,
        rules,
        agreement=agreement,
        purpose=purpose,
        obligations=obligations,
    )


def _transfer(
    request: DecisionRequest, facts: Facts, known: list[str], withheld: list[Withheld], rules: list[str]
) -> Decision:
    if not request.to_district_id:
        return _deny(request, "transfer_not_lawful", "a transfer names the receiving district (to_district_id)")
    if request.to_district_id == request.district_id:
        return _deny(request, "transfer_not_lawful", "a transfer goes to another district, not the owning one")
    requester = request.requester
    receiving_staff = (
        requester.role in ("district_staff", "school_staff") and requester.district_id == request.to_district_id
    )
    if requester.role != "service" and not receiving_staff:
        return _deny(
            request,
            "transfer_not_lawful",
            f"a transfer is asked by the transfer service or the receiving district, not a {requester.role}",
        )
    outcome = _Outcome(withheld=list(withheld))
    for element_id in known:
        if not CATALOGUE[element_id].transferable:
            outcome.withheld.append(Withheld(element=element_id, reason="the catalogue marks it not transferable"))
        elif element_id in facts.not_transferable:
            outcome.withheld.append(
                Withheld(element=element_id, reason=f"district {request.district_id} does not transfer it")
            )
        else:
            outcome.allowed.append(element_id)
    rules = ["transfer-to-enrolling-school", *rules]
    # No directory opt-out here: 99.37 lets a parent stop *directory* disclosures, and a
    # transfer rests on 99.31(a)(2), not on 99.31(a)(11); the receiving school needs the
    # child's name, birth date and grade. The opt-out travels with the record instead
    # (obligation below) and binds the receiving district too (consent's transfer consumer).
    obligations = list(_TRANSFER_OBLIGATIONS)
    if facts.directory_opt_out:
        obligations.append(_OPT_OUT_TRAVELS)
    return _permit(
        request,
        outcome.allowed,
        outcome.withheld,
        LegalBasis.TRANSFER,
        f"transfer from {request.district_id} to {request.to_district_id}, where the student seeks to enroll",
        rules=rules,
        purpose=request.purpose or "records_transfer",
        obligations=obligations,
    )


def _vendor(
    request: DecisionRequest, facts: Facts, known: list[str], withheld: list[Withheld], rules: list[str]
) -> Decision:
    agreement_id = request.requester.agreement_id
    assert agreement_id is not None
    if not facts.history:
        return _deny(
            request, "agreement_unknown", f"no agreement {agreement_id} is on record", agreement_id=agreement_id
        )
    latest = max(facts.history, key=lambda a: a.version)
    status = current_status(facts.history)
    if status is AgreementStatus.ENDED:
        when = f" on {facts.ended_on.isoformat()}" if facts.ended_on else ""
        return _deny(
            request,
            "agreement_ended",
            f"agreement {agreement_id} ended{when}; nothing is released under it",
            agreement=latest,
        )
    if status is AgreementStatus.DRAFT:
        return _deny(
            request, "agreement_draft", f"agreement {agreement_id} is a draft and releases nothing", agreement=latest
        )
    if status is AgreementStatus.SUSPENDED:
        return _deny(request, "agreement_suspended", f"agreement {agreement_id} is suspended", agreement=latest)
    version = governing_version(facts.history, facts.today)
    if version is None:
        return _deny(
            request,
            "outside_term",
            f"today ({facts.today.isoformat()}) is outside the term of agreement {agreement_id}",
            agreement=latest,
        )
    label = f"agreement {version.id} v{version.version}"
    terms = version.terms
    if request.district_id not in terms.districts:
        return _deny(
            request, "district_not_covered", f"{label} does not cover district {request.district_id}", agreement=version
        )
    # A version that lists schools (or classes) covers a student only in one of them, and only
    # when the request says which the student's are.
    schools = None if request.school_id is None else [request.school_id]
    for code, listed, theirs, unknown, outside in (
        (
            "school_not_covered",
            terms.schools,
            schools,
            "schools and the student's school is not known",
            f"does not cover school {request.school_id}",
        ),
        (
            "class_not_covered",
            terms.classes,
            request.class_ids,
            "classes and the student's classes are not known",
            "covers none of the student's classes",
        ),
    ):
        if listed and (theirs is None or set(theirs).isdisjoint(listed)):
            reason = f"{label} covers only some {unknown}" if theirs is None else f"{label} {outside}"
            return _deny(request, code, reason, agreement=version)
    if request.data_date is not None:
        start, end = terms.start_date, terms.end_date
        if (start is not None and request.data_date < start) or (end is not None and request.data_date > end):
            return _deny(
                request,
                "outside_term",
                f"the data's date {request.data_date.isoformat()} is outside the term of {label}",
                agreement=version,
            )
    if request.purpose is not None and request.purpose not in terms.purposes:
        return _deny(
            request,
            "purpose_not_permitted",
            f"{label} does not permit the purpose {request.purpose!r}",
            agreement=version,
        )
    purpose = effective_purpose(request, version)

    basis = _CATEGORY_BASIS[version.category]
    consented, consent_ids = consented_elements(facts, version.id, purpose)

    outcome = _Outcome(withheld=list(withheld))
    by_agreement = set(terms.elements) if basis is not None else set()
    # With no FERPA exception for this kind of recipient, only what the parent consented
    # to, and never more than the agreement lists.
    by_consent = consented & set(terms.elements) if basis is None else consented - by_agreement
    for element_id in known:
        if element_id in by_agreement or element_id in by_consent:
            outcome.allowed.append(element_id)
        elif basis is None and element_id in terms.elements:
            outcome.withheld.append(
                Withheld(element=element_id, reason=f"{label} needs the parent's written consent and there is none")
            )
        else:
            outcome.withheld.append(Withheld(element=element_id, reason=f"not in {label}"))
    applied = ["agreement"] if any(e in by_agreement for e in outcome.allowed) else []
    if any(e in by_consent for e in outcome.allowed):
        applied.append("written-consent")
    rules = [*applied, *rules]
    _apply_opt_out(outcome, facts, rules)

    only_consent = bool(outcome.allowed) and all(e not in by_agreement for e in outcome.allowed)
    chosen = LegalBasis.WRITTEN_CONSENT if basis is None or only_consent else basis
    reason = f"{label} is active and covers district {request.district_id}"
    if consent_ids and "written-consent" in rules:
        reason += f"; written consent {', '.join(consent_ids)}"
    return _permit(
        request,
        outcome.allowed,
        outcome.withheld,
        chosen,
        reason,
        rules=rules,
        agreement=version,
        # Every disclosure names its purpose: the one asked, else the agreement's own.
        purpose=purpose or ", ".join(terms.purposes),
        obligations=_CATEGORY_OBLIGATIONS[version.category],
    )


def effective_purpose(request: DecisionRequest, version: Agreement) -> str | None:
    """The request's purpose, or the agreement's only purpose when the request names none."""
    purposes = version.terms.purposes
    return request.purpose or (purposes[0] if len(purposes) == 1 else None)


def consented_elements(facts: Facts, agreement_id: str, purpose: str | None) -> tuple[set[str], list[str]]:
    """Elements written consents release to this agreement today for this purpose, and the consents' ids."""
    consented: set[str] = set()
    consent_ids: list[str] = []
    for grant in facts.consents:
        if grant.recipient != agreement_id:
            continue
        if grant.valid_until is not None and grant.valid_until < facts.today:
            continue
        if grant.purpose is not None and purpose is not None and grant.purpose != purpose:
            continue
        consented |= grant.elements
        consent_ids.append(grant.consent_id)
    return consented, consent_ids


def category_basis(category: AgreementCategory) -> LegalBasis | None:
    """The FERPA exception a category of recipient rests on; None when it needs written consent."""
    return _CATEGORY_BASIS[category]


def policy_document() -> dict[str, Any]:
    """The rules as data, for `GET /v1/policy` and auditors."""
    return {
        "policy_version": POLICY_VERSION,
        "default": "deny",
        "permits": [_rule_dict(r) for r in RULES],
        "prohibitions": [_rule_dict(r) for r in PROHIBITIONS],
        "category_legal_basis": {
            c.value: (b.value if b else LegalBasis.WRITTEN_CONSENT.value) for c, b in _CATEGORY_BASIS.items()
        },
        "category_obligations": {c.value: list(o) for c, o in _CATEGORY_OBLIGATIONS.items()},
        "denial_codes": DENIAL_CODES,
    }


def _rule_dict(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "effect": rule.effect,
        "when": rule.when,
        "grants": rule.grants,
        "legal_basis": rule.legal_basis,
    }
