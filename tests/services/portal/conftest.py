"""The real embedded stack the demo test also uses (`demo_stack` in tests/conftest.py: the
services and the portal as processes), seeded through the real APIs by the demo scenario's
own steps up to the end of the vendor's agreement, plus a few more facts the portal pages
show: an agreement ending within 30 days, a bulk upload held for confirmation, a denied
request, and a signed tree head covering everything."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from homeroom.auth import Role
from homeroom_dev.generate import json_batch
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS, Scenario, ok
from homeroom_dev.stack import Stack
from tests.stacks import DemoStack


def nyc_2d_page() -> str | None:
    """The seed page where a checkout has it: beside the repository (shared/seeds) or HOMEROOM_SEEDS."""
    name = "003_0bd684370ade645f.txt"
    root = Path(__file__).resolve().parents[3]
    for folder in (Path(os.environ.get("HOMEROOM_SEEDS", "/nonexistent")), root.parent / "shared" / "seeds"):
        if (folder / name).is_file():
            return (folder / name).read_text()
    return None


@dataclass
class World:
    stack: Stack
    scenario: Scenario
    portal: str
    child: str  # the mover: a vendor read and a transfer disclosed their record
    other_child: str  # another family's child in district A
    district_a: str
    district_b: str
    agreement_id: str
    ending_agreement: str
    held_submission: str
    case_id: str

    def sign_in_query(self, role: str, **scope: str) -> dict[str, str]:
        return {"role": role, **scope}


def _seed(scenario: Scenario, http: httpx.Client) -> dict[str, Any]:
    urls = scenario.urls
    compliance = scenario.auth(Role.COMPLIANCE, "compliance-officer")
    today = date.today()
    created = ok(
        http.post(
            f"{urls['consent']}/v1/agreements",
            json={
                "organization": "Short Term Tutoring",
                "category": "vendor",
                "supplemental": SUPPLEMENTAL_ANSWERS,
                "terms": {
                    "elements": ["student.first_name"],
                    "purposes": ["instruction"],
                    "districts": [scenario.district_b.id],
                    "start_date": (today - timedelta(days=10)).isoformat(),
                    "end_date": (today + timedelta(days=12)).isoformat(),
                    "disposition": "destroy",
                },
            },
            headers=compliance,
        ),
        201,
    )
    ok(http.post(f"{urls['consent']}/v1/agreements/{created['id']}/activate", headers=compliance))
    # A vendor asks for a student of a district its agreement does not cover: a denial.
    outside = scenario.district_b.students[3]
    http.get(
        f"{urls['records']}/v1/students/{scenario.pseudonyms.student_key(outside.state_id)}",
        headers=scenario.vendor_headers(),
    )
    # District B withdraws most of one school at once: the safety rail holds the upload.
    school = scenario.district_b.schools[0].id
    leaving = [s for s in scenario.district_b.students if s.school_id == school][:8]
    records = [
        {
            "type": "withdraw",
            "student_id": s.local_id,
            "school_id": school,
            "exit_date": (scenario.world.start + timedelta(days=6)).isoformat(),
            "exit_code": "moved",
        }
        for s in leaving
    ]
    staff_b = scenario.staff(scenario.district_b.id)
    submitted = ok(
        http.post(
            f"{urls['ingest']}/v1/districts/{scenario.district_b.id}/submissions/batch",
            content=json_batch(records),
            params={"file": "mass-withdrawal.json"},
            headers=staff_b,
        ),
        202,
    )
    scenario.wait(
        "the upload to be held",
        lambda: ok(http.get(f"{urls['ingest']}/v1/submissions/{submitted['id']}", headers=staff_b))["status"] == "held",
    )
    cases = ok(http.get(f"{urls['transfer']}/v1/transfers", headers=staff_b))["transfers"]
    # The NYC DOE's published Ed Law 2-d page (seed 003), imported as drafts for compliance to review.
    page = nyc_2d_page()
    if page is not None:
        ok(
            http.post(
                f"{urls['consent']}/v1/agreements/import-2d",
                json={"text": page, "source_name": "nyc-doe-2d.txt", "districts": [scenario.district_b.id]},
                headers=compliance,
            )
        )
    # Every disclosure so far is covered by a signed tree head.
    scenario.wait(
        "the audit log to catch up",
        lambda: ok(
            http.get(
                f"{urls['audit']}/v1/entries", params={"kind": "disclosure_recorded", "limit": 1000}, headers=compliance
            )
        )["entries"],
    )
    ok(http.post(f"{urls['audit']}/v1/tree-heads", headers=compliance), 201)
    return {"ending": created["id"], "held": submitted["id"], "case_id": cases[0]["case_id"]}


@pytest.fixture(scope="package")
def world(demo_stack: DemoStack) -> World:
    assert demo_stack.failures == 0, "\n".join(demo_stack.lines)
    stack, scenario = demo_stack.stack, demo_stack.scenario
    with httpx.Client(timeout=60) as http:
        seeded = _seed(scenario, http)
    return World(
        stack=stack,
        scenario=scenario,
        portal=stack.url("portal"),
        child=scenario.mover_key,
        other_child=scenario.pseudonyms.student_key(scenario.district_a.students[5].state_id),
        district_a=scenario.district_a.id,
        district_b=scenario.district_b.id,
        agreement_id=scenario.facts["agreement_id"],
        ending_agreement=seeded["ending"],
        held_submission=seeded["held"],
        case_id=seeded["case_id"],
    )
