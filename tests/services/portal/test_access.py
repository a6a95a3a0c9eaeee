"""The portal over plain HTTP against the real stack: who may open which page, sign-in
and its cookie, CSRF, and that every page's data is the services' answer to the person's
own token (another family's child is refused by records and audit, not by the portal)."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import re
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from homeroom.auth import Role
from services.portal.proofs import check_entry
from tests.services.portal.conftest import World


@contextlib.contextmanager
def signed_in(world: World, role: str, **scope: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.portal, timeout=30) as client:
        r = client.post("/sign-in/dev", data={"role": role, "subject": f"test-{role}", **scope})
        assert r.status_code == 303, r.text
        yield client


def parent(world: World) -> contextlib.AbstractContextManager[httpx.Client]:
    return signed_in(world, "parent", students=world.child)


def compliance(world: World) -> contextlib.AbstractContextManager[httpx.Client]:
    return signed_in(world, "compliance")


def district(world: World) -> contextlib.AbstractContextManager[httpx.Client]:
    return signed_in(world, "district_staff", district=world.district_b)


def vendor(world: World) -> contextlib.AbstractContextManager[httpx.Client]:
    return signed_in(world, "vendor", agreement=world.agreement_id, organization="Brightpath Learning")


def test_session_cookie_is_http_only_and_strict(world: World) -> None:
    with httpx.Client(base_url=world.portal) as client:
        r = client.post("/sign-in/dev", data={"role": "compliance", "subject": "c"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "content-security-policy" in r.headers


def test_a_scope_that_does_not_fit_the_role_is_refused_at_sign_in(world: World) -> None:
    with httpx.Client(base_url=world.portal) as client:
        r = client.post("/sign-in/dev", data={"role": "vendor", "subject": "v"})
    assert r.status_code == 422
    assert "agreement" in r.text and "set-cookie" not in r.headers


def test_pages_need_a_sign_in(world: World) -> None:
    with httpx.Client(base_url=world.portal) as client:
        for path in ("/parent", "/compliance", "/compliance/log", "/district", f"/parent/children/{world.child}"):
            r = client.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next="), path
    with httpx.Client(base_url=world.portal, cookies={"homeroom_session": "not-a-token"}) as client:
        assert client.get("/parent").status_code == 303


WRONG_ROLE = [
    ("parent", "/compliance"),
    ("parent", "/compliance/log"),
    ("parent", "/compliance/export.jsonl"),
    ("parent", "/district"),
    ("vendor", "/parent"),
    ("vendor", "/parent/children/{child}"),
    ("vendor", "/parent/children/{child}/disclosures"),
    ("vendor", "/compliance"),
    ("vendor", "/district"),
    ("district", "/parent/children/{child}"),
    ("district", "/compliance/log"),
    ("compliance", "/district"),
    ("compliance", "/parent/children/{child}/choices"),
    ("parent", "/district/chronic-absence"),
    ("parent", "/district/amendments"),
    ("parent", "/compliance/agreements"),
    ("district", "/compliance/agreements"),
    ("vendor", "/notices"),
    ("vendor", "/district/amendments"),
    ("compliance", "/district/chronic-absence"),
    ("compliance", "/parent/children/{child}/transfers"),
    ("district", "/parent/children/{child}/transfers"),
    ("parent", "/district/statistics"),
    ("compliance", "/district/statistics"),
    ("vendor", "/district/statistics"),
    ("parent", "/vendor"),
    ("district", "/vendor"),
    ("compliance", "/vendor/roster.zip"),
    ("parent", "/incidents"),
    ("vendor", "/incidents/inc-000000000000"),
    ("parent", "/incidents/inc-000000000000/letters"),
    ("vendor", "/incidents/inc-000000000000/scope/1/bundle"),
]


@pytest.mark.parametrize(("who", "path"), WRONG_ROLE)
def test_a_role_never_opens_another_roles_pages(world: World, who: str, path: str) -> None:
    with {"parent": parent, "vendor": vendor, "district": district, "compliance": compliance}[who](world) as client:
        r = client.get(path.format(child=world.child))
    assert r.status_code == 403, r.text
    assert "Not a page for your role" in r.text
    assert "Zoe" not in r.text and world.child not in r.text.replace(f"/parent/children/{world.child}", "")


def test_navigation_offers_only_the_roles_pages(world: World) -> None:
    with parent(world) as client:
        page = client.get("/parent").text
    assert 'href="/parent"' in page and 'href="/compliance' not in page and 'href="/district"' not in page
    with vendor(world) as client:
        home = client.get("/", follow_redirects=True).text  # to the vendor's own page
    assert 'href="/vendor"' in home and 'href="/parent"' not in home and 'href="/district"' not in home


def test_the_vendor_sees_its_agreement_what_it_received_and_downloads_its_roster(world: World) -> None:
    """Issue 23: the vendor page. What it may see, how many students it has received and when
    (records' read log), and its OneRoster CSV roster, each student in it a disclosure."""
    with vendor(world) as client:
        page = client.get("/vendor")
        assert page.status_code == 200, page.text
        assert "Brightpath Learning" in page.text and "First name" in page.text
        before = int(re.search(r"<strong>(\d+)</strong> students", page.text).group(1))  # type: ignore[union-attr]
        roster = client.get("/vendor/roster.zip")
        assert roster.status_code == 200 and roster.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(roster.content)) as zf:
            users = list(csv.DictReader(io.StringIO(zf.read("users.csv").decode())))
            assert {"manifest.csv", "orgs.csv", "classes.csv", "enrollments.csv"} <= set(zf.namelist())
        assert users and all(u["sourcedId"].startswith("stu_") for u in users)
        after = client.get("/vendor").text
        received = int(re.search(r"<strong>(\d+)</strong> students", after).group(1))  # type: ignore[union-attr]
        assert received >= len(users) and received >= before
        refused = client.get("/vendor/roster.zip", params={"since": "yesterday"})
        assert refused.status_code == 422 and "ISO 8601" in refused.text


def test_another_familys_child_is_refused_by_the_services(world: World) -> None:
    with parent(world) as client:
        record = client.get(f"/parent/children/{world.other_child}")
        disclosures = client.get(f"/parent/children/{world.other_child}/disclosures")
        report = client.get(f"/parent/children/{world.other_child}/disclosures.csv")
        choices = client.get(f"/parent/children/{world.other_child}/choices")
    # records answers 404 (never "exists but forbidden"); audit and consent 403.
    assert record.status_code == 404 and "records service" in record.text
    assert disclosures.status_code == 403 and "audit service" in disclosures.text
    assert report.status_code == 403 and choices.status_code == 403


def test_parent_sees_the_childs_disclosures_and_downloads_the_report(world: World) -> None:
    with parent(world) as client:
        page = client.get(f"/parent/children/{world.child}/disclosures")
        report = client.get(f"/parent/children/{world.child}/disclosures.csv")
    assert page.status_code == 200
    assert "Brightpath Learning" in page.text and "First name" in page.text
    assert world.district_b in page.text  # the transfer to the new district
    assert report.status_code == 200 and report.headers["content-disposition"].startswith("attachment")
    assert "Brightpath Learning" in report.text and report.text.startswith("when,recipient")
    # The witnessed head (issue 17, item 3): the stack's witness cosigned the seed's head.
    assert "Checked by an independent witness" in page.text and "witness.homeroom.local/w1" in page.text


def test_compliance_verification_shows_the_witnessed_head(world: World) -> None:
    with signed_in(world, "compliance") as client:
        page = client.get("/compliance/verification")
    assert page.status_code == 200 and "Verified:" in page.text, page.text
    assert "Checked by an independent witness" in page.text and "homeroom.local/audit-log" in page.text


def test_forms_refuse_a_missing_or_foreign_csrf_token(world: World) -> None:
    with parent(world) as client:
        missing = client.post(
            f"/parent/children/{world.child}/directory-opt-out", data={"district_id": world.district_b}
        )
        wrong = client.post(
            f"/parent/children/{world.child}/directory-opt-out",
            data={"district_id": world.district_b, "csrf": "0" * 64},
        )
        page = client.get(f"/parent/children/{world.child}/choices").text
    assert missing.status_code == 403 and wrong.status_code == 403
    assert "you have not opted out" in page  # nothing was recorded
    with compliance(world) as client:
        sign_out = client.post("/sign-out", data={"csrf": "x"})
    assert sign_out.status_code == 403


def test_new_forms_refuse_a_missing_csrf_token_and_other_families_transfers_are_refused(world: World) -> None:
    with district(world) as client:
        decision = client.post(
            "/district/amendments/00000000-0000-0000-0000-000000000000/decision",
            data={"outcome": "refused", "reason": "x"},
        )
    assert decision.status_code == 403 and "Form refused" in decision.text
    with compliance(world) as client:
        bulk = client.post("/compliance/agreements/activate", data={"agreement": "anything"})
        notices = client.get("/notices")
    assert bulk.status_code == 403 and notices.status_code == 200
    with parent(world) as client:
        other = client.get(f"/parent/children/{world.other_child}/transfers")
        mine = client.get(f"/parent/children/{world.child}/transfers")
        notices = client.get("/notices")
    assert other.status_code == 404 and mine.status_code == 200 and world.district_b in mine.text
    assert notices.status_code == 200 and world.other_child not in notices.text


def test_parent_sees_where_the_record_went_what_was_sent_and_withheld_and_the_acknowledgement_99_34(
    world: World,
) -> None:
    with parent(world) as client:
        page = client.get(f"/parent/children/{world.child}/transfers")
    assert page.status_code == 200
    text = page.text
    assert f"From district {world.district_a} to district {world.district_b}" in text
    assert "First name" in text and "Last name" in text  # sent: an opt-out would never strip these
    assert "Discipline incident details: " in text  # withheld, with the reason
    assert "FERPA 99.31(a)(2) transfer to enrolling school" in text
    assert "Acknowledged by the new school</dt><dd>yes, " in text


def test_export_streams_the_log_for_compliance(world: World) -> None:
    with compliance(world) as client:
        r = client.get("/compliance/export.jsonl")
    assert r.status_code == 200 and r.headers["content-disposition"].endswith('homeroom-audit.jsonl"')
    first = r.text.splitlines()[0]
    assert '"homeroom-audit-export/1"' in first


def test_bad_search_filters_are_named_not_a_500(world: World) -> None:
    with compliance(world) as client:
        r = client.get("/compliance/log", params={"from": "2026-01-01T00:00:00"})
        junk = client.get("/compliance/log/not-a-number")
    assert r.status_code == 422 and "time zone" in r.text
    assert junk.status_code == 422


def test_the_proof_check_catches_an_altered_entry_a_wrong_path_and_an_unknown_key(world: World) -> None:
    """The portal's own check of an entry (compliance/log/{seq}), on a real answer of the audit service."""
    scenario = world.scenario
    audit = scenario.urls["audit"]
    compliance_token = scenario.auth(Role.COMPLIANCE, "c")
    with httpx.Client(timeout=30, headers=compliance_token) as http:
        found = http.get(f"{audit}/v1/entries", params={"kind": "disclosure_recorded", "limit": 1}).json()
        answer = http.get(f"{audit}/v1/entries/{found['entries'][0]['seq']}").json()
        keys = http.get(f"{audit}/v1/keys").json()["keys"]
    assert check_entry(answer, keys).verified
    altered = copy.deepcopy(answer)
    altered["entry"]["elements"].append("student.birth_date")
    check = check_entry(altered, keys)
    assert not check.verified and not check.leaf_matches and check.head_valid and not check.included
    wrong_path = copy.deepcopy(answer)
    wrong_path["inclusion_proof"] = [*reversed(answer["inclusion_proof"]), "00" * 32]
    assert not check_entry(wrong_path, keys).included
    stranger = check_entry(answer, {"other": next(iter(keys.values()))})
    assert not stranger.verified and not stranger.head_valid
    assert any("no public key with the id" in p for p in stranger.problems)


def test_the_one_page_summary_lists_the_written_consents_given_and_withdrawn_99_30(world: World) -> None:
    """Issue 24, item 4: the printable summary answers with the parent's choices as consent keeps
    them: written consents given (and to whom, what, why, how) and withdrawn, opt-outs, every
    choice in order. Another family's child (district A), so no other test's page changes."""
    child, consent = world.other_child, world.stack.url("consent")
    headers = world.scenario.auth(Role.PARENT, "test-parent", students=[child])
    with httpx.Client(timeout=30) as http:
        given = []
        for method in ("paper_form", "portal"):
            r = http.post(
                f"{consent}/v1/students/{child}/consents",
                json={
                    "district_id": world.district_a,
                    "recipient": world.ending_agreement,
                    "elements": ["student.first_name"],
                    "purpose": "instruction",
                    "method": method,
                },
                headers=headers,
            )
            assert r.status_code == 201, r.text
            given.append(r.json()["consent_id"])
        withdrawn = http.post(
            f"{consent}/v1/students/{child}/consents/{given[0]}/withdraw", json={"method": "email"}, headers=headers
        )
        assert withdrawn.status_code == 200, withdrawn.text
    with signed_in(world, "parent", students=child) as client:
        page = client.get(f"/parent/children/{child}/summary")
    assert page.status_code == 200, page.text
    table = page.text.split("Written consents (FERPA 34 CFR 99.30)", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, flags=re.S)
    assert len(rows) == 2, table
    assert all("Short Term Tutoring" in row and "First name" in row and "instruction" in row for row in rows)
    assert "paper form" in rows[0] and "withdrawn" in rows[0] and "(email)" in rows[0]
    assert "portal" in rows[1] and "in force" in rows[1]
    assert "Every choice recorded for your child, in order: 3" in page.text
    assert "consent given" in page.text and "consent withdrawn" in page.text
    assert "No guardianship link is recorded for you" in page.text  # the development sign-in names the child
