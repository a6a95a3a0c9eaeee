"""Schema-driven fuzzing of every HTTP API, on the real stack (service processes, embedded
PostgreSQL and Tansu), with schemathesis generating requests from each service's own
OpenAPI document.

Every operation gets `EXAMPLES` generated requests, valid and invalid by the document
(schemathesis' positive and negative modes), each sent with a real token of one of the
roles (so most requests get past 401 into the handler) and, half the time, with path
parameters pinned to ids that exist (a district, a student, an agreement, a submission),
so handlers reach their database and their peers rather than stopping at "not found".
Each answer must be:

- not a server error (any 5xx fails; the stack is whole, so no 503 is expected either);
- conformant to the response schema the document declares for its status code;
- an RFC 9457 problem (application/problem+json with `status` equal to the HTTP status)
  for every 4xx.

The documents are used as the services serve them: the kernel declares every error answer
as an RFC 9457 problem (`homeroom.problems.PROBLEM_SCHEMA`; FastAPI alone would document
422 as its `HTTPValidationError`), so 4xx bodies are checked against what the services
promise (docs/contracts.md).

Reproducible and bounded: hypothesis runs derandomised (examples follow from the test
itself), with no example database and no deadline. The cases tried per service are
printed.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from homeroom.auth import Role
from homeroom.registry import SERVICES
from homeroom_dev.generate import generate_world
from homeroom_dev.scenario import Scenario
from homeroom_dev.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.whole_stack]

EXAMPLES = 20  # per operation and generation mode; 73 operations, so about 2,900 cases

# Processes of the stack that serve no JSON API of their own.
# The roles each service mostly serves: half the cases use one of these, so more requests
# get past 403 into the handlers; the other half use any role.
USERS = {
    "ingest": [Role.DISTRICT_STAFF, Role.SCHOOL_STAFF],
    "records": [Role.DISTRICT_STAFF, Role.VENDOR, Role.PARENT, Role.SERVICE],
    "consent": [Role.COMPLIANCE, Role.DISTRICT_STAFF, Role.SERVICE, Role.PARENT],
    "transfer": [Role.DISTRICT_STAFF, Role.COMPLIANCE],
    "audit": [Role.COMPLIANCE, Role.PARENT],
}

NOT_FUZZED = {
    "portal": "HTML pages for people; it forwards the person's token to the five APIs fuzzed here",
}

# Found by this module and reported to the records service's owner rather than fixed here
# (services/records is another engineer's area): these requests are left out until fixed.
ONEROSTER_FILES = ["manifest.csv", "orgs.csv", "users.csv", "roles.csv", "enrollments.csv", "academicSessions.csv"]
CSV_TEXT = st.text(alphabet=st.sampled_from('abc019,"\n\r-:.T \x00é'), max_size=200)


def zipped(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return out.getvalue()


# The upload routes' raw bodies (zip, XML) have no JSON schema to generate from: malformed
# CSV inside real zips, broken XML, and plain junk bytes.
schemathesis.openapi.media_type(
    "application/zip",
    st.one_of(st.builds(zipped, st.dictionaries(st.sampled_from(ONEROSTER_FILES), CSV_TEXT, max_size=6)), st.binary()),
)
schemathesis.openapi.media_type(
    "application/xml",
    st.one_of(
        st.builds(
            lambda tag, text: (
                f'<?xml version="1.0"?><{tag}><Student><StudentUniqueId>{text}</StudentUniqueId>'.encode()
            ),
            st.sampled_from(["InterchangeStudent", "InterchangeStudentAttendance", "x:y", "!DOCTYPE a"]),
            st.text(max_size=40),
        ),
        st.binary(max_size=400),
    ),
)


@dataclass
class World:
    """Ids that exist in the running stack, for pinning path parameters."""

    stack: Stack
    scenario: Scenario
    known: dict[str, str] = field(default_factory=dict)

    def roles(self) -> dict[Role, dict[str, str]]:
        scn, district = self.scenario, self.scenario.district_a
        return {
            Role.DISTRICT_STAFF: scn.auth(Role.DISTRICT_STAFF, "fuzz-staff", district=district.id),
            Role.SCHOOL_STAFF: scn.auth(
                Role.SCHOOL_STAFF, "fuzz-school", district=district.id, schools=[district.schools[0].id]
            ),
            Role.VENDOR: scn.vendor_headers(),
            Role.PARENT: scn.auth(Role.PARENT, "fuzz-parent", students=[self.known["student_key"]]),
            Role.COMPLIANCE: scn.auth(Role.COMPLIANCE, "fuzz-compliance"),
            Role.OPERATOR: scn.auth(Role.OPERATOR, "fuzz-operator"),
            Role.SERVICE: scn.auth(Role.SERVICE, "fuzz-service"),
        }


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with Stack(fixed_ports=False) as stack:
        generated = generate_world(seed=33, students_per_district=6, days=3, start=date(2026, 9, 14))
        scn = Scenario(
            {n: stack.url(n) for n in stack.services}, stack.secrets_dir, say=lambda *a, **k: None, world=generated
        )
        with httpx.Client(timeout=60) as http:
            report = scn.publish_oneroster(http)
            assert "0 refused" in report
            scn.sign_agreement(http)
            submissions = http.get(
                f"{stack.url('ingest')}/v1/districts/{scn.district_a.id}/submissions",
                headers=scn.staff(scn.district_a.id),
            ).json()["submissions"]
        student = scn.district_a.students[0]
        key = scn.pseudonyms.student_key(student.state_id)
        known = {
            "district_id": scn.district_a.id,
            "student_key": key,
            "sourced_id": key,
            "agreement_id": scn.facts["agreement_id"],
            "submission_id": submissions[0]["id"],
            "seq": "0",
            "resource": "students",
        }
        yield World(stack, scn, known)


def error_is_a_problem(ctx: Any, response: schemathesis.Response, case: Any) -> bool | None:
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), (
            f"{response.status_code} answered as {content_type!r}, not a problem"
        )
        body = response.json()
        assert body.get("status") == response.status_code, (
            f"problem status {body.get('status')} in a {response.status_code}"
        )
        assert body.get("title"), "problem without a title"
    return None


def fuzz_operation(
    service: str,
    operation: Any,  # schemathesis.APIOperation (generic in four parameters)
    base_url: str,
    world: World,
    session: requests.Session,
    statuses: Counter[int],
) -> None:
    roles = world.roles()
    users = USERS.get(service, list(roles))
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=EXAMPLES * 2,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure is reported as found, unshrunk: bounded time
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, role=st.one_of(st.sampled_from(users), st.sampled_from(list(roles))), pin=st.booleans())
    def run(case: Any, role: Role, pin: bool) -> None:
        if pin and case.path_parameters:
            for name in case.path_parameters:
                if name in world.known:
                    case.path_parameters[name] = world.known[name]
        response = case.call(base_url=base_url, session=session, headers=roles[role], timeout=30)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance, error_is_a_problem])

    run()


@pytest.mark.parametrize("service", list(SERVICES))
def test_schema_driven_fuzzing_finds_no_server_error(service: str, world: World) -> None:
    if service in NOT_FUZZED:
        pytest.skip(NOT_FUZZED[service])
    base_url = world.stack.url(service)
    doc = httpx.get(f"{base_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    tried: dict[str, Counter[int]] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()  # type: ignore[union-attr]  # an invalid document raises here
            tried[operation.label] = Counter()
            fuzz_operation(service, operation, base_url, world, session, tried[operation.label])
    statuses = sum(tried.values(), Counter[int]())
    shown = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    print(
        f"\n{service}: {len(tried)} operations, {statuses.total()} schema-generated cases, no server error "
        f"(answers by status: {shown})"
    )
    assert len(tried) == sum(len(ops) for ops in doc["paths"].values())
    assert all(c.total() > 0 for c in tried.values()), [label for label, c in tried.items() if not c]
    # The fuzz reached the handlers: some answers were successes, not only 401/403/422.
    assert sum(n for code, n in statuses.items() if code < 300) > 0


def integer_parameters(doc: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(method, path, location, name) of every integer path or query parameter."""
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                types = [parameter["schema"].get("type")] + [
                    s.get("type") for s in parameter["schema"].get("anyOf", [])
                ]
                if "integer" in types and parameter["in"] in ("path", "query"):
                    yield method, path, parameter["in"], parameter["name"]


@pytest.mark.parametrize("service", list(SERVICES))
def test_integers_past_the_database_range_are_refused_not_crashed(service: str, world: World) -> None:
    """Every integer parameter at and past PostgreSQL's bigint range, with every role: a 4xx
    or a success, never a 500 from the driver's overflow (hypothesis rarely draws these)."""
    if service in NOT_FUZZED:
        pytest.skip(NOT_FUZZED[service])
    base_url = world.stack.url(service)
    doc = httpx.get(f"{base_url}/openapi.json").json()
    tried = 0
    crashed: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for method, path, location, name in integer_parameters(doc):
            for value in (2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1):
                concrete = re.sub(r"\{([^}]+)\}", lambda m: world.known.get(m.group(1), "1"), path)
                params = {}
                if location == "path":
                    concrete = path.replace(f"{{{name}}}", str(value))
                    concrete = re.sub(r"\{([^}]+)\}", lambda m: world.known.get(m.group(1), "1"), concrete)
                else:
                    params[name] = str(value)
                for headers in world.roles().values():
                    response = http.request(method, concrete, params=params, headers=headers)
                    tried += 1
                    if response.status_code >= 500:
                        crashed.append(f"{method.upper()} {concrete} {params} → {response.status_code}")
    print(f"\n{service}: {tried} requests with integers at the bigint boundary, {len(crashed)} server errors")
    assert not crashed, "\n".join(sorted(set(crashed)))
