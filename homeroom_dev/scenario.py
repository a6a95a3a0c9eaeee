"""The demo scenario: what the people who use Homeroom do, step by step, over HTTP.

Each step talks to the running services as one of Homeroom's users would (district data
staff, a vendor app, a compliance officer, a parent) and returns what it saw; a step that
did not see what it should raises `StepFailed`, which the demo counts and the end-to-end
test turns into a failure. The data comes from `homeroom_dev.generate` (seed 7): district
d-100 exports OneRoster 1.2, district d-101 uses the JSON batch API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from homeroom.auth import DevIssuer, Role
from homeroom.pseudonym import Pseudonymizer, load_or_create_key
from homeroom_dev.generate import (
    District,
    World,
    batch_records,
    generate_world,
    json_batch,
    oneroster_zip,
    transfer_batch,
)

VENDOR = "Brightpath Learning"
VENDOR_ELEMENTS = ["student.first_name", "student.last_name", "enrollment.grade_level", "enrollment.school_id"]
# The six Ed Law 2-d answers (8 NYCRR 121.3(c)) the vendor gave; no agreement is activated without them.
SUPPLEMENTAL_ANSWERS: dict[str, str] = {
    "exclusive_purposes": "Rostering and delivering the reading curriculum to enrolled students.",
    "subcontractor_oversight": "Subcontractors sign the same data protection terms and are audited yearly.",
    "term_and_expiry": "Ends with the contract; data destroyed within 30 days and destruction certified in writing.",
    "accuracy_challenge": "Parents write to the district's data privacy officer, who corrects the source record.",
    "storage_and_protections": "US data centres; access limited to named staff and logged.",
    "encryption": "AES-256 at rest, TLS 1.2 or later in transit.",
}


class StepFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def ok(response: httpx.Response, *codes: int) -> Any:
    allowed = codes or (200,)
    expect(
        response.status_code in allowed,
        f"{response.request.method} {response.request.url.path} answered {response.status_code}: {response.text[:400]}",
    )
    return response.json() if response.content else None


@dataclass
class Scenario:
    urls: dict[str, str]
    secrets_dir: Path
    say: Callable[..., Any] = print
    timeout_s: float = 60.0
    world: World = field(default_factory=lambda: generate_world(seed=7, students_per_district=40, days=5))
    facts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.issuer = DevIssuer(self.secrets_dir / "dev-issuer.pem")
        self.pseudonyms = Pseudonymizer(load_or_create_key(self.secrets_dir / "pseudonym.key"))
        self.district_a, self.district_b = self.world.districts[0], self.world.districts[1]
        self.move = self.world.transfers[0]
        expect(self.move.from_district == self.district_a.id, "the generated transfer should leave district A")
        self.mover_key = self.pseudonyms.student_key(self.move.state_id)

    # --- plumbing ---------------------------------------------------------------------------

    def steps(self) -> list[tuple[str, Callable[[httpx.Client], str]]]:
        return [
            ("Every service is up, with its database and the bus", self.services_ready),
            (f"District {self.district_a.id} publishes its roster as a OneRoster 1.2 export", self.publish_oneroster),
            (f"District {self.district_b.id} publishes its roster and a week of attendance as JSON", self.publish_json),
            (f"District {self.district_a.id} publishes a week of attendance", self.publish_attendance),
            ("Each district sees its own students, and never the other's", self.records_by_district),
            (f"Compliance signs and activates an agreement with {VENDOR}", self.sign_agreement),
            (f"{VENDOR} reads the roster: only the elements its agreement lists", self.vendor_reads),
            (f"A student moves from {self.district_a.id} to {self.district_b.id}: the record follows", self.transfer),
            ("The parent sees who saw their child's data, when and why", self.parent_view),
            (
                "The district prints a linking letter; the parent signs in and links their child with it",
                self.parent_links,
            ),
            (f"{VENDOR} reports a breach: scoped from the log, clocks started, letters sent", self.breach),
            ("Compliance publishes statewide comparisons: small cells are suppressed", self.statistics),
            (f"{VENDOR}'s agreement ends: its data is destroyed and it reads nothing", self.agreement_ends),
            ("The disclosure log verifies against its signed tree heads", self.audit_verifies),
        ]

    def run(self, *, stop_on_failure: bool = False, only: Collection[str] | None = None) -> int:
        """Play every step (or those whose method is named in `only`); the number of failures."""
        failures = 0
        with httpx.Client(timeout=self.timeout_s) as http:
            for number, (title, step) in enumerate(self.steps(), 1):
                if only is not None and step.__name__ not in only:
                    continue
                started = time.perf_counter()
                try:
                    shown = step(http)
                except (StepFailed, httpx.HTTPError) as exc:
                    failures += 1
                    self.say(f"[red]✗[/] {number}. {title}: {exc}")
                    if stop_on_failure:
                        raise
                    continue
                self.say(f"[green]✓[/] {number}. {title} ({time.perf_counter() - started:.1f}s)\n     {shown}")
        return failures

    def auth(self, role: Role, subject: str = "demo", **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.issue(role, subject=subject, **scope)}"}

    def staff(self, district_id: str) -> dict[str, str]:
        return self.auth(Role.DISTRICT_STAFF, f"data-office-{district_id}", district=district_id)

    def wait(self, what: str, probe: Callable[[], Any], timeout_s: float | None = None) -> Any:
        """Poll until `probe` returns something truthy: the system is eventually consistent."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.25)
        raise StepFailed(f"timed out waiting for {what} (last saw {str(last)[:300]})")

    def submit(self, http: httpx.Client, district_id: str, kind: str, body: bytes, name: str) -> dict[str, Any]:
        submitted = ok(
            http.post(
                f"{self.urls['ingest']}/v1/districts/{district_id}/submissions/{kind}",
                content=body,
                params={"file": name},
                headers=self.staff(district_id),
            ),
            200,
            202,
        )

        def finished() -> dict[str, Any] | None:
            report: dict[str, Any] = ok(
                http.get(f"{self.urls['ingest']}{submitted['links']['self']}", headers=self.staff(district_id))
            )
            return report if report["status"] in ("completed", "failed", "held") else None

        report: dict[str, Any] = self.wait(f"submission {submitted['id']}", finished)
        expect(report["status"] == "completed", f"submission ended {report['status']}: {report.get('error')}")
        return report

    def register_schools(self, http: httpx.Client, district: District) -> None:
        """A district on the JSON API registers its schools first (OneRoster's orgs.csv does it itself)."""
        for school in district.schools:
            ok(
                http.post(
                    f"{self.urls['ingest']}/v1/districts/{district.id}/organizations",
                    json={"org_id": school.id, "org_type": "school", "name": school.name},
                    headers=self.staff(district.id),
                ),
                200,
                201,
                409,
            )

    # --- steps --------------------------------------------------------------------------------

    def services_ready(self, http: httpx.Client) -> str:
        shown = []
        for name, url in self.urls.items():
            ready = http.get(f"{url}/readyz")
            expect(ready.status_code == 200, f"{name} is not ready: {ready.text}")
            paths = http.get(f"{url}/openapi.json").json()["paths"]
            shown.append(f"{name} ({len(paths)} routes)")
        return ", ".join(shown)

    def publish_oneroster(self, http: httpx.Client) -> str:
        district = self.district_a
        report = self.submit(http, district.id, "oneroster", oneroster_zip(district, self.world.start), "roster.zip")
        counts = report["counts"]
        expect(counts["rejected"] == 0, f"the generated roster should be clean: {report.get('problems_by_rule')}")
        expect(counts["accepted"] >= len(district.students), f"accepted {counts['accepted']} records")
        read, accepted, events = counts["records_read"], counts["accepted"], counts["events"]
        return f"{read} records read, {accepted} accepted, {events} events, 0 refused"

    def publish_json(self, http: httpx.Client) -> str:
        district = self.district_b
        self.register_schools(http, district)
        records = list(batch_records(district, self.world.start, world=self.world))
        # One record a careless export might carry: it must be refused, the rest applied.
        records.append(
            {
                "type": "student",
                "student_id": "d-101-bad",
                "student": {"student.state_id": "900999999", "student.ssn": "219-09-9999"},
            }
        )
        report = self.submit(http, district.id, "batch", json_batch(records), "roster-and-attendance.json")
        counts = report["counts"]
        problems = ok(http.get(f"{self.urls['ingest']}{report['links']['problems']}", headers=self.staff(district.id)))
        rules = sorted({p["rule"] for p in problems["problems"]})
        expect(
            counts["rejected"] == 1 and rules == ["ssn.forbidden"], f"expected one SSN refusal, got {counts} {rules}"
        )
        first = problems["problems"][0]
        return (
            f"{counts['accepted']} accepted, {counts['rejected']} refused: "
            f"line {first.get('line')}, field {first['field']}, rule {first['rule']}: {first['message']}"
        )

    def publish_attendance(self, http: httpx.Client) -> str:
        district = self.district_a
        records = list(batch_records(district, self.world.start, enrollments=False))
        report = self.submit(http, district.id, "batch", json_batch(records), "attendance-week.json")
        counts = report["counts"]
        expect(counts["rejected"] == 0, f"attendance refused: {report.get('problems_by_rule')}")
        chronic = sum(1 for s in district.students if s.chronic)
        accepted = counts["accepted"]
        return (
            f"{accepted} attendance and suspension records accepted ({chronic} students in the chronic-absence group)"
        )

    def records_by_district(self, http: httpx.Client) -> str:
        seen: dict[str, int] = {}
        for district in (self.district_a, self.district_b):

            def listed(d: str = district.id, n: int = len(district.students)) -> int:
                body = ok(
                    http.get(
                        f"{self.urls['records']}/v1/districts/{d}/students",
                        params={"limit": 1000},
                        headers=self.staff(d),
                    )
                )
                return len(body["students"]) if len(body["students"]) >= n else 0

            seen[district.id] = self.wait(f"records of {district.id}", listed)
        # District B's staff try to read district A's student, by the direct route and by the shared one.
        a_key = self.pseudonyms.student_key(self.district_a.students[0].state_id)
        direct = http.get(
            f"{self.urls['records']}/v1/districts/{self.district_a.id}/students/{a_key}",
            headers=self.staff(self.district_b.id),
        )
        listing = http.get(
            f"{self.urls['records']}/v1/districts/{self.district_a.id}/students", headers=self.staff(self.district_b.id)
        )
        shared = http.get(f"{self.urls['records']}/v1/students/{a_key}", headers=self.staff(self.district_b.id))
        leaked = [r for r in (direct, listing) if r.status_code not in (403, 404)]
        if shared.status_code == 200:
            leaked += [shared] if shared.json().get("records") else []
        expect(
            not leaked,
            f"{self.district_b.id} saw {self.district_a.id}'s data: {[r.status_code for r in leaked]}",
        )
        return (
            f"{self.district_a.id} staff see {seen[self.district_a.id]} students, {self.district_b.id} staff see "
            f"{seen[self.district_b.id]}; cross-district reads answered "
            f"{direct.status_code}/{listing.status_code}/{shared.status_code}"
        )

    def sign_agreement(self, http: httpx.Client) -> str:
        compliance = self.auth(Role.COMPLIANCE, "compliance-officer")
        start = self.world.start
        body = {
            "organization": VENDOR,
            "category": "vendor",
            "supplemental": SUPPLEMENTAL_ANSWERS,
            "terms": {
                "elements": VENDOR_ELEMENTS,
                "purposes": ["rostering", "instruction"],
                "districts": [self.district_a.id],
                "start_date": (start - timedelta(days=30)).isoformat(),
                "end_date": (start + timedelta(days=300)).isoformat(),
                "disposition": "destroy",
            },
        }
        agreement = ok(http.post(f"{self.urls['consent']}/v1/agreements", json=body, headers=compliance), 201)
        agreement_id = agreement.get("agreement_id") or agreement.get("id")
        self.facts["agreement_id"] = agreement_id
        ok(http.post(f"{self.urls['consent']}/v1/agreements/{agreement_id}/activate", headers=compliance), 200, 201)
        public = ok(http.get(f"{self.urls['consent']}/v1/public/agreements"))
        listed = [a for a in public["agreements"] if a["agreement_id"] == agreement_id]
        expect(bool(listed), "the active agreement should be on the public Ed Law 2-d page")
        answers = listed[0]["supplemental"]
        expect(answers == SUPPLEMENTAL_ANSWERS, f"the public page should show the vendor's six answers: {answers}")
        elements = ", ".join(VENDOR_ELEMENTS)
        return (
            f"agreement {agreement_id} active for {self.district_a.id}: {elements}; "
            "listed on the public page with its six Ed Law 2-d answers"
        )

    def vendor_headers(self) -> dict[str, str]:
        return self.auth(Role.VENDOR, "brightpath-app", agreement=self.facts["agreement_id"], organization=VENDOR)

    def vendor_reads(self, http: httpx.Client) -> str:
        url = f"{self.urls['records']}/ims/oneroster/rostering/v1p2/students"
        body = ok(http.get(url, params={"limit": 100}, headers=self.vendor_headers()))
        users = body["users"]
        expect(len(users) == len(self.district_a.students), f"vendor saw {len(users)} students")
        fields = sorted({k for u in users for k, v in u.items() if v not in (None, "", [], {})})
        expect(
            "birthDate" not in fields and "email" not in fields, f"vendor saw fields outside its agreement: {fields}"
        )
        # It asks a student's attendance, which its agreement does not list.
        key = self.pseudonyms.student_key(self.district_a.students[1].state_id)
        asked = http.get(
            f"{self.urls['records']}/v1/students/{key}",
            params=[("elements", "attendance.daily"), ("elements", "student.first_name")],
            headers=self.vendor_headers(),
        )
        expect(asked.status_code in (200, 403), f"vendor read answered {asked.status_code}")
        if asked.status_code == 200:
            dumped = json.dumps(asked.json())
            expect('"days": [{' not in dumped, "vendor received attendance days outside its agreement")
        # A student of district B is outside the agreement.
        outside = http.get(
            f"{self.urls['records']}/v1/students/{self.pseudonyms.student_key(self.district_b.students[0].state_id)}",
            headers=self.vendor_headers(),
        )
        got_b = outside.status_code == 200 and bool(outside.json().get("records"))
        expect(not got_b, "vendor read a student of a district its agreement does not cover")
        return (
            f"{len(users)} students with fields {', '.join(fields)}; attendance withheld; "
            f"{self.district_b.id}'s students refused ({outside.status_code})"
        )

    def transfer(self, http: httpx.Client) -> str:
        withdraw, enroll = transfer_batch(self.world, self.move)
        self.submit(http, self.move.from_district, "batch", withdraw, "withdrawal.json")
        started = time.perf_counter()
        self.submit(http, self.move.to_district, "batch", enroll, "new-student.json")
        receiving = self.staff(self.move.to_district)

        def delivered() -> dict[str, Any] | None:
            cases = ok(http.get(f"{self.urls['transfer']}/v1/transfers", headers=receiving))["transfers"]
            mine = [c for c in cases if c["student_key"] == self.mover_key]
            return mine[0] if mine and mine[0]["state"] in ("delivered", "acknowledged") else None

        case = self.wait("the transfer to be delivered", delivered)
        seconds = time.perf_counter() - started
        record = ok(
            http.get(
                f"{self.urls['records']}/v1/districts/{self.move.to_district}/students/{self.mover_key}",
                headers=receiving,
            )
        )
        prior = record.get("prior_records") or []
        expect(bool(prior), "the receiving district's record holds no delivered package")
        ok(
            http.post(
                f"{self.urls['transfer']}/v1/transfers/{case['case_id']}/acknowledge",
                json={"note": "received"},
                headers=receiving,
            )
        )
        withheld = case.get("elements_withheld") or []
        return (
            f"case {case['case_id']} delivered {seconds:.1f}s after enrollment, "
            f"acknowledged by {self.move.to_district}; "
            f"{len(case.get('elements_released') or [])} elements travelled, {len(withheld)} withheld"
        )

    def parent_view(self, http: httpx.Client) -> str:
        parent = self.auth(Role.PARENT, "parent-of-mover", students=[self.mover_key])
        url = f"{self.urls['audit']}/v1/students/{self.mover_key}/disclosures"

        def both() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = ok(http.get(url, headers=parent))["disclosures"]
            recipients = json.dumps([d["recipient"] for d in found])
            return found if VENDOR in recipients and self.move.to_district in recipients else None

        disclosures: list[dict[str, Any]] = self.wait("the vendor read and the transfer in the parent's view", both)
        other = http.get(
            f"{self.urls['audit']}/v1/students/{self.pseudonyms.student_key(self.district_a.students[5].state_id)}/disclosures",
            headers=parent,
        )
        expect(other.status_code == 403, f"a parent read another child's disclosures ({other.status_code})")
        lines = "\n     ".join(f"- {d['summary']}" for d in disclosures[:4])
        return f"{len(disclosures)} disclosures; another child's log refused (403)\n     {lines}"

    def parent_links(self, http: httpx.Client) -> str:
        """Issue 24: district B's data office issues a linking code for the mover and prints the
        letter; the parent signs in through the portal's OIDC flow (its development identity
        provider, an identity naming no child), redeems the code and opens the child's disclosures."""
        import re
        from urllib.parse import parse_qsl, urlsplit

        from homeroom.contracts.linking_codes import IssuedCodes, letter_text

        portal = self.urls.get("portal")
        if portal is None:
            return "no portal in this run: skipped"
        district = self.move.to_district
        issued = IssuedCodes.model_validate(
            ok(
                http.post(
                    f"{self.urls['consent']}/v1/districts/{district}/linking-codes",
                    json={"students": [{"student_key": self.mover_key}], "valid_days": 30},
                    headers=self.staff(district),
                ),
                201,
            )
        )
        letter = letter_text(district, issued.codes[0], portal)
        with httpx.Client(base_url=portal, timeout=self.timeout_s) as browser:
            start = browser.get("/sign-in/oidc")
            expect(start.status_code == 303, f"the portal's sign-in did not start ({start.status_code})")
            asked = dict(parse_qsl(urlsplit(start.headers["location"]).query))
            flow = {k: asked.get(k, "") for k in ("redirect_uri", "state", "nonce", "code_challenge")}
            back = browser.post("/dev-identity/authorize", data={"subject": "parent-of-mover@example.org", **flow})
            expect(back.status_code == 303, f"the identity provider refused ({back.status_code})")
            signed_in = browser.get(back.headers["location"])
            expect(signed_in.status_code == 200, f"the sign-in did not finish ({signed_in.status_code})")
            form = browser.get("/parent/link")
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
            expect(csrf is not None, "the linking form has no CSRF token")
            assert csrf is not None
            linked = browser.post(
                "/parent/link", data={"code": issued.codes[0].code, "csrf": csrf.group(1)}, headers={"origin": portal}
            )
            expect(
                linked.status_code == 303 and linked.headers["location"].endswith(self.mover_key),
                f"the code did not link the child ({linked.status_code})",
            )
            seen = browser.get(f"/parent/children/{self.mover_key}/disclosures")
            expect(VENDOR in seen.text, "the linked parent does not see the child's disclosures")
        page = "\n     ".join(letter.splitlines())
        return f"linked with the code below; the parent's page lists {VENDOR}'s reads\n     {page}"

    def breach(self, http: httpx.Client) -> str:
        """A vendor reports its own breach (8 NYCRR 121.10(a)); compliance scopes it from the disclosure
        log; district A reports to the CPO and writes to every affected family; the scope bundle is
        checked offline against the log's and the witness's keys, as the state would."""
        from datetime import UTC, datetime

        from homeroom.checkpoint import COSIGNATURE_V1, ED25519, Verifier, public_key_from_pem
        from homeroom.tlog.signing import Keyring
        from services.incidents.scope import TrustAnchors, read_lines, verify_bundle

        incidents, compliance = self.urls["incidents"], self.auth(Role.COMPLIANCE, "compliance-officer")
        district = self.district_a.id
        self.wait(
            f"every read by {VENDOR} in the log",
            lambda: (
                len(
                    ok(
                        http.get(
                            f"{self.urls['audit']}/v1/entries",
                            params={"recipient": VENDOR, "kind": "disclosure_recorded", "limit": 1000},
                            headers=compliance,
                        )
                    )["entries"]
                )
                >= len(self.district_a.students)
            ),
        )
        now = datetime.now(UTC)
        opened = ok(
            http.post(
                f"{incidents}/v1/incidents",
                json={
                    "discovered_at": (now - timedelta(hours=1)).isoformat(),
                    "description": "A reporting server exposed roster exports to the internet.",
                    "exposure_start": (now - timedelta(days=1)).isoformat(),
                    "investigation": "The server is offline; an outside firm is reviewing its access logs.",
                    "contact": "the district's data privacy officer, privacy@d-100.example.org",
                },
                headers=self.vendor_headers(),
            ),
            201,
        )
        incident_id = opened["incident_id"]
        scope = ok(http.post(f"{incidents}/v1/incidents/{incident_id}/scope", json={}, headers=compliance), 201)
        totals = scope["totals"]
        expect(
            totals["students"] == len(self.district_a.students),
            f"the scope holds {totals['students']} students; {VENDOR} read {len(self.district_a.students)}",
        )
        staff = self.staff(district)
        ok(http.post(f"{incidents}/v1/incidents/{incident_id}/cpo-report", json={}, headers=staff))
        letters = ok(http.post(f"{incidents}/v1/incidents/{incident_id}/letters", json={}, headers=staff))
        sent = sum(d["letters"] for d in letters["districts"])
        view = ok(http.get(f"{incidents}/v1/incidents/{incident_id}", headers=compliance))
        clocks = {o["kind"]: o for o in view["obligations"] if o["basis"] == "law"}
        expect(
            all(o["standing"] == "met" for o in clocks.values()),
            f"every clock should be met: {[(k, o['standing']) for k, o in clocks.items()]}",
        )
        # The state's check: pinned keys (the log's, the witness's, the incidents service's), no trust in Homeroom.
        bundle = http.get(f"{incidents}/v1/incidents/{incident_id}/scope/1/bundle", headers=compliance)
        log_keys = ok(http.get(f"{self.urls['audit']}/v1/keys", headers=compliance))["keys"]
        signer = ok(http.get(f"{incidents}/v1/keys", headers=compliance))
        witness_pem = (self.secrets_dir / "witness.pub.pem").read_bytes()
        anchors = TrustAnchors(
            log_keys=Keyring.from_pems(p.encode() for p in log_keys.values()),
            witness=Verifier("witness.homeroom.local/w1", COSIGNATURE_V1, public_key_from_pem(witness_pem)),
            incidents=Verifier(signer["name"], ED25519, public_key_from_pem(signer["public_key"].encode())),
        )
        checked = verify_bundle(read_lines([bundle.content]), anchors)
        expect(checked.ok and checked.witnessed, f"the scope bundle does not verify: {checked.findings[:3]}")
        self.facts["breach"] = {
            "incident_id": incident_id,
            "students": totals["students"],
            "elements": len(totals["students_by_element"]),
            "disclosures": totals["disclosures"],
            "proof_hashes": scope["proof_hashes"],
            "tree_size": scope["tree_size"],
            "bundle_bytes": scope["bundle_bytes"],
            "letters": sent,
            "cpo_due": clocks["agency_to_cpo"]["due_at"],
            "parents_due": clocks["agency_to_parents"]["due_at"],
        }
        return (
            f"incident {incident_id}: {totals['students']} students, {len(totals['students_by_element'])} elements, "
            f"{totals['disclosures']} disclosures, proven by one multiproof of {scope['proof_hashes']} hashes against "
            f"the witnessed head of size {scope['tree_size']}; bundle {scope['bundle_bytes']:,} bytes, verified "
            f"offline; contractor's notice met at once (121.10(a)); CPO report sent, due by "
            f"{clocks['agency_to_cpo']['due_at'][:10]} (121.10(b)); {sent} letters to families, due by "
            f"{clocks['agency_to_parents']['due_at'][:10]} (121.10(e))"
        )

    def agreement_ends(self, http: httpx.Client) -> str:
        agreement_id = self.facts["agreement_id"]
        ended = ok(
            http.post(
                f"{self.urls['consent']}/v1/agreements/{agreement_id}/end",
                json={"reason": "terminated", "disposition": "destroy"},
                headers=self.auth(Role.COMPLIANCE, "compliance-officer"),
            )
        )

        def refused() -> httpx.Response | None:
            r = http.get(f"{self.urls['records']}/ims/oneroster/rostering/v1p2/students", headers=self.vendor_headers())
            return r if r.status_code in (403, 410) or (r.status_code == 200 and not r.json()["users"]) else None

        answer = self.wait("the vendor to be refused", refused)
        return f"ended ({json.dumps(ended)[:160]}...); the vendor's next read answered {answer.status_code}"

    def audit_verifies(self, http: httpx.Client) -> str:
        compliance = self.auth(Role.COMPLIANCE, "compliance-officer")
        head = ok(http.post(f"{self.urls['audit']}/v1/tree-heads", headers=compliance), 200, 201)
        report = ok(http.get(f"{self.urls['audit']}/v1/verification", headers=compliance))
        expect(report["ok"] is True, f"verification failed: {report['findings'][:3]}")
        size = head.get("tree_size", head.get("size"))
        return (
            f"{report['entries_read']} entries, {report['heads_checked']} signed tree heads checked, "
            f"tree size {size}: intact "
            f"(offline: homeroom audit verify --url {self.urls['audit']})"
        )

    def statistics(self, http: httpx.Client) -> str:
        """The reports service's tally has counted both districts; a snapshot is published (a
        de-identified release in the log) and one school's table shows a suppressed cell."""
        a, b = self.district_a, self.district_b
        reports = self.urls["reports"]

        def counted(district: District, at_least: int) -> dict[str, Any] | None:
            r = http.get(f"{reports}/v1/districts/{district.id}/numbers", headers=self.staff(district.id))
            if r.status_code != 200:
                return None
            numbers: dict[str, Any] = r.json()
            total = sum(
                row["counts"].get("enrolled", 0)
                for row in numbers["rows"]
                if row["unit"] == district.id and row["column"] == "all"
            )
            return numbers if total >= at_least else None

        # The mover counts once, in the district of their latest enrollment.
        self.wait(f"{b.id} counted", lambda: counted(b, len(b.students)), timeout_s=120)
        numbers = self.wait(f"{a.id} counted", lambda: counted(a, len(a.students) - 1), timeout_s=120)
        compliance = self.auth(Role.COMPLIANCE, "compliance-officer")
        summary = ok(
            http.post(
                f"{reports}/v1/snapshots",
                json={"school_year": numbers["school_year"], "purpose": "statewide comparisons (demo)"},
                headers=compliance,
            ),
            201,
        )
        snapshot = ok(http.get(f"{reports}/v1/public/snapshots/{summary['snapshot_id']}", params={"district": a.id}))
        names = {u["key"]: u["name"] for u in snapshot["units"]}
        schools = [u["key"] for u in snapshot["units"] if u["level"] == "school"]
        suppressed = [
            r for r in snapshot["rows"] if r["unit"] in schools and r["counts"]["enrolled"]["status"] != "published"
        ]
        expect(bool(suppressed), f"no school cell of {a.id} is suppressed")
        school, column = suppressed[0]["unit"], suppressed[0]["column"]
        dimension = column.split(":", 1)[0]
        table = [r for r in snapshot["rows"] if r["unit"] == school and r["column"].split(":", 1)[0] == dimension]
        expect(
            all(
                r["counts"]["enrolled"]["value"] is None
                for r in table
                if r["counts"]["enrolled"]["status"] != "published"
            ),
            "a suppressed cell carries a number",
        )
        lines = "\n".join(f"       {r['column']:<24} {r['counts']['enrolled']['shown']:>16}" for r in table)
        cells = summary["cells"]
        self.facts["statistics"] = {
            "snapshot_id": summary["snapshot_id"],
            "version": summary["version"],
            "district": a.id,
            "column": column,
            "school": names.get(school, school),
            "table": [(r["column"], r["counts"]["enrolled"]["shown"]) for r in table],
            "suppressed": cells["fewer_than"] + cells["withheld"],
            "cells": cells["total"],
        }
        return (
            f"snapshot v{summary['version']} of {summary['school_year_label']}: "
            f"{cells['fewer_than'] + cells['withheld']} of {cells['total']} cells suppressed "
            f"(rules: fewer than {snapshot['rules']['min_cell']} students never shown); "
            f"{names.get(school, school)}, students enrolled by {dimension}:\n{lines}"
        )
