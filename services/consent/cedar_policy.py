"""The decision policy in Cedar (`policy.cedar`), evaluated with cedarpy. Pure: no I/O but
reading the policy file once.

`decisions.decide` explains an answer in plain words (which rule, which element, why);
this module asks Cedar the same question element by element. The decision point releases
an element only when both permit it, so the Cedar text an auditor reads is a real bound
on what Homeroom releases, and a mistake in either cannot widen a release. Tests check
that the two agree on generated requests.

What Cedar receives: the request, the governing agreement version's terms and today's
date (days since 1970-01-01), whether the student is opted out of directory information,
and the elements the parent's written consents release to this agreement for this
purpose (consents are filtered in Python: Cedar has no quantifier over a set of records).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import cedarpy

from homeroom.catalogue import CATALOGUE, FORBIDDEN
from homeroom.contracts.consent import Decision, DecisionRequest, Withheld
from services.consent.agreements import current_status, governing_version
from services.consent.decisions import (
    Facts,
    category_basis,
    consented_elements,
    decide,
    effective_purpose,
    guardianship_refusal,
)
from services.consent.metrics import POLICY_DISAGREEMENTS

log = logging.getLogger(__name__)

POLICY_FILE = Path(__file__).with_name("policy.cedar")
_OPEN_END = 99_999_999
_EPOCH = date(1970, 1, 1)


def _day(value: date | None, default: int) -> int:
    return (value - _EPOCH).days if value is not None else default


@functools.cache
def _policies() -> cedarpy.PolicySet:
    return cedarpy.PolicySet.from_str(POLICY_FILE.read_text())


@functools.cache
def _entities() -> cedarpy.Entities:
    ids = sorted(set(CATALOGUE) | set(FORBIDDEN))
    entities = []
    for element_id in ids:
        entry = CATALOGUE.get(element_id)
        entities.append(
            {
                "uid": {"type": "Homeroom::Element", "id": element_id},
                "attrs": {
                    "eid": element_id,
                    "sensitivity": entry.sensitivity.value if entry else "identifier",
                    "transferable": bool(entry.transferable) if entry else False,
                    "forbidden": element_id in FORBIDDEN,
                },
                "parents": [],
            }
        )
    return cedarpy.Entities.from_json_str(json.dumps(entities))


@functools.cache
def policy_ids() -> list[str]:
    """The `@id` of each policy in file order (Cedar names them policy0, policy1 ...)."""
    return re.findall(r'^@id\("([^"]+)"\)', POLICY_FILE.read_text(), flags=re.M)


def policy_text() -> str:
    return POLICY_FILE.read_text()


def context(request: DecisionRequest, facts: Facts) -> dict[str, Any]:
    requester = request.requester
    agreement: dict[str, Any] = {
        "present": False,
        "status": "",
        "basis": "",
        "districts": [],
        "schools": [],
        "elements": [],
        "purposes": [],
        "start": 0,
        "end": 0,
    }
    consented: set[str] = set()
    version = governing_version(facts.history, facts.today) if facts.history else None
    if requester.role == "vendor" and requester.agreement_id and version is not None:
        terms = version.terms
        agreement = {
            "present": True,
            "status": current_status(facts.history).value,
            "basis": "exception" if category_basis(version.category) is not None else "consent",
            "districts": list(terms.districts),
            "schools": list(terms.schools),
            "elements": list(terms.elements),
            "purposes": list(terms.purposes),
            "start": _day(terms.start_date, _OPEN_END),
            "end": _day(terms.end_date, _OPEN_END),
        }
        consented, _ = consented_elements(facts, version.id, effective_purpose(request, version))
    # The student's key matters to the policy only through a parent's own keys; leaving it out
    # for everyone else makes the contexts of one vendor's roster identical, so they are cached.
    parent = requester.role == "parent"
    return {
        "requester": {
            "role": requester.role,
            "district_id": requester.district_id or "",
            "student_keys": sorted(requester.student_keys) if parent else [],
        },
        "student_key": request.student_key if parent else "",
        # The guardianship registry's answer for this student in this district (decisions.py).
        "guardian_link_ok": parent and guardianship_refusal(facts, request.district_id) is None,
        "district_id": request.district_id,
        "school_id": request.school_id or "",
        "to_district_id": request.to_district_id or "",
        "purpose": request.purpose or "",
        "data_day": _day(request.data_date, 0),
        "today": _day(facts.today, 0),
        "directory_opt_out": facts.directory_opt_out,
        "agreement": agreement,
        "consented": sorted(consented),
        "not_transferable": sorted(facts.not_transferable),
    }


_CACHE_SIZE = 20_000
_cache: OrderedDict[str, frozenset[str]] = OrderedDict()


def permitted(request: DecisionRequest, facts: Facts, elements: Sequence[str]) -> set[str]:
    """The elements (of those given; unknown ids are never permitted) that Cedar permits.

    Answers are cached by the exact Cedar input (action, context, elements): the policy is a
    pure function of it, so a cached answer is the answer Cedar would give."""
    known = [e for e in dict.fromkeys(elements) if e in CATALOGUE or e in FORBIDDEN]
    if not known:
        return set()
    ctx = context(request, facts)
    key = json.dumps([request.action, ctx, known], sort_keys=True, separators=(",", ":"))
    hit = _cache.get(key)
    if hit is not None:
        _cache.move_to_end(key)
        return set(hit)
    principal = {"type": "Homeroom::Requester", "id": "requester"}  # the policy reads context.requester
    action = {"type": "Homeroom::Action", "id": request.action}
    requests = [
        {"principal": principal, "action": action, "resource": {"type": "Homeroom::Element", "id": e}, "context": ctx}
        for e in known
    ]
    results = cedarpy.is_authorized_batch(requests, _policies(), _entities())
    allowed = set()
    for element_id, result in zip(known, results, strict=True):
        if result.diagnostics.errors:
            log.error("cedar evaluation error for %s: %s", element_id, result.diagnostics.errors)
        if result.allowed:
            allowed.add(element_id)
    _cache[key] = frozenset(allowed)
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return allowed


def decide_bounded(request: DecisionRequest, facts: Facts) -> Decision:
    """`decisions.decide`, with every element it would release also required to pass the Cedar policy.

    Only the elements the rules release are put to Cedar (a denial needs no second opinion);
    the full element-by-element agreement of the two is what the tests check."""
    decision = decide(request, facts)
    if not decision.elements_allowed:
        return decision
    cedar = permitted(request, facts, decision.elements_allowed)
    refused = [e for e in decision.elements_allowed if e not in cedar]
    if not refused:
        return decision
    POLICY_DISAGREEMENTS.inc(len(refused))
    log.error(
        "decision rules and Cedar policy disagree; withholding what Cedar does not permit",
        extra={"decision_id": decision.decision_id, "refused": refused},
    )
    allowed = [e for e in decision.elements_allowed if e in cedar]
    withheld = [
        *decision.elements_withheld,
        *(Withheld(element=e, reason="the Cedar policy does not permit it") for e in refused),
    ]
    return decision.model_copy(
        update={
            "allow": bool(allowed),
            "elements_allowed": allowed,
            "elements_withheld": withheld,
            "legal_basis": decision.legal_basis if allowed else None,
            "denial": None if allowed else "nothing_releasable",
            "obligations": decision.obligations if allowed else [],
        }
    )
