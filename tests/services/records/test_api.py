"""The records API beyond isolation: amendments and statements (FERPA 99.20/99.21), the
OneRoster 1.2 subset for vendors, and the internal transfer calls."""

from __future__ import annotations

import uuid

import pytest

from services.records.store import district_tx
from tests.harness import ServiceEnv, exported
from tests.services.records.helpers import Records, apply, attendance, enrolled, records_service, registered, school

OR = "/ims/oneroster/rostering/v1p2"


async def student(rec: Records, district: str, school_id: str, first: str, last: str, key: str | None = None) -> str:
    key = key or f"stu_{uuid.uuid4().hex[:10]}"
    await apply(
        rec.runtime,
        await registered(
            rec.runtime,
            district,
            key,
            {"student.first_name": first, "student.last_name": last},
            {"enrollment.grade_level": "05"},
        ),
        enrolled(district, key, school_id, "2026-09-01"),
    )
    return key


# --- amendments -------------------------------------------------------------------------


async def test_amendment_accepted_corrects_the_record(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = await student(rec, "d-a", "a-1", "Jon", "Smyth")
        parent = {"students": [key]}
        r = await rec.post(
            f"/v1/students/{key}/amendments",
            {"element": "student.last_name", "requested_value": "Smith", "reason": "spelt wrong"},
            "parent",
            **parent,
        )
        assert r.status_code == 201, r.text
        amendment = r.json()["id"]
        # Another parent cannot file for this child; another district's staff cannot decide.
        other = await rec.post(
            f"/v1/students/{key}/amendments",
            {"element": "student.last_name", "reason": "x"},
            "parent",
            students=["stu_x"],
        )
        assert other.status_code == 404
        r = await rec.post(
            f"/v1/amendments/{amendment}/decision",
            {"outcome": "accepted", "reason": "ok"},
            "district_staff",
            district="d-b",
        )
        assert r.status_code == 404
        # A parent cannot decide their own request.
        r = await rec.post(
            f"/v1/amendments/{amendment}/decision", {"outcome": "accepted", "reason": "ok"}, "parent", **parent
        )
        assert r.status_code == 403
        r = await rec.post(
            f"/v1/amendments/{amendment}/decision",
            {"outcome": "accepted", "reason": "birth certificate checked"},
            "district_staff",
            district="d-a",
        )
        assert r.status_code == 200, r.text
        assert r.json()["value_corrected"] is True
        # Decided once only.
        r = await rec.post(
            f"/v1/amendments/{amendment}/decision",
            {"outcome": "refused", "reason": "no"},
            "district_staff",
            district="d-a",
        )
        assert r.status_code == 409
        record = (await rec.get(f"/v1/districts/d-a/students/{key}", "district_staff", district="d-a")).json()
        assert record["elements"]["student.last_name"] == "Smith"
        (kept,) = record["amendments"]
        assert kept["status"] == "accepted" and kept["outcome_reason"] == "birth certificate checked"
        assert kept["reason"] == "spelt wrong"
        # No statement after an acceptance.
        r = await rec.post(
            f"/v1/students/{key}/amendments/{amendment}/statement", {"statement": "x"}, "parent", **parent
        )
        assert r.status_code == 409


async def test_amendment_refused_then_parent_statement_kept_with_record(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = await student(rec, "d-a", "a-1", "Mia", "Lund")
        parent = {"students": [key]}
        r = await rec.post(
            f"/v1/students/{key}/amendments",
            {"element": "attendance.daily", "reason": "she was present on 9/2"},
            "parent",
            **parent,
        )
        amendment = r.json()["id"]
        # Statement before any decision: refused.
        r = await rec.post(
            f"/v1/students/{key}/amendments/{amendment}/statement", {"statement": "x"}, "parent", **parent
        )
        assert r.status_code == 409
        r = await rec.post(
            f"/v1/amendments/{amendment}/decision",
            {"outcome": "refused", "reason": "teacher's register shows absent"},
            "school_staff",
            district="d-a",
            schools=["a-1"],
        )
        assert r.status_code == 200 and r.json()["status"] == "refused"
        r = await rec.post(
            f"/v1/students/{key}/amendments/{amendment}/statement",
            {"statement": "We disagree: she was at the dentist, excused."},
            "parent",
            **parent,
        )
        assert r.status_code == 201, r.text
        r = await rec.post(
            f"/v1/students/{key}/amendments/{amendment}/statement", {"statement": "again"}, "parent", **parent
        )
        assert r.status_code == 409
        record = (await rec.get(f"/v1/students/{key}", "parent", **parent)).json()["records"][0]
        assert record["parent_statements"][0]["statement"] == "We disagree: she was at the dentist, excused."
        assert record["amendments"][0]["outcome_reason"] == "teacher's register shows absent"
        listed = (await rec.get("/v1/districts/d-a/amendments?status=refused", "district_staff", district="d-a")).json()
        assert [a["id"] for a in listed["amendments"]] == [amendment]


@pytest.mark.parametrize(
    ("body", "rule_or_status"),
    [
        ({"element": "student.ssn", "reason": "x"}, "element.unknown"),
        ({"element": "student.last_name", "reason": ""}, "string_too_short"),
        ({"element": "student.last_name", "reason": "x", "extra": 1}, "extra_forbidden"),
        ({"element": "student.last_name", "reason": "x", "district_id": "d-b"}, 404),
    ],
)
async def test_amendment_bad_requests(service_env: ServiceEnv, body: dict[str, object], rule_or_status: object) -> None:
    async with records_service(service_env) as rec:
        key = await student(rec, "d-a", "a-1", "Mia", "Lund")
        r = await rec.post(f"/v1/students/{key}/amendments", body, "parent", students=[key])
        if isinstance(rule_or_status, int):
            assert r.status_code == rule_or_status
        else:
            assert r.status_code == 422
            assert r.json()["errors"][0]["rule"] == rule_or_status


# --- OneRoster --------------------------------------------------------------------------


async def rosterly(rec: Records) -> None:
    """Rosterly's agreement for school a-1 of district A, active in the real consent service."""
    await rec.agreement(
        "agr-or",
        "Rosterly",
        districts=["d-a"],
        schools=["a-1"],
        elements=["student.first_name", "enrollment.school_id", "enrollment.entry_date", "enrollment.grade_level"],
    )


VENDOR = {"agreement": "agr-or", "organization": "Rosterly"}


async def test_oneroster_students_filtered_by_agreement_with_paging_and_incremental_pulls(
    service_env: ServiceEnv,
) -> None:
    async with records_service(service_env) as rec:
        await rosterly(rec)
        await apply(
            rec.runtime, school("d-a", "a-1", "Alder"), school("d-a", "a-2", "Aspen"), school("d-b", "b-1", "Birch")
        )
        keys = sorted([await student(rec, "d-a", "a-1", f"Kid{i}", f"Secretname{i}") for i in range(5)])
        hidden = await student(rec, "d-a", "a-2", "Other", "Schoolkid")  # school not covered
        await student(rec, "d-b", "b-1", "Far", "Away")  # district not covered

        r = await rec.get(f"{OR}/students?limit=2&offset=1", "vendor", **VENDOR)
        assert r.status_code == 200, r.text
        users = r.json()["users"]
        assert [u["sourcedId"] for u in users] == keys[1:3]
        for u in users:
            assert u["givenName"].startswith("Kid") and "familyName" not in u
            assert u["roles"] == [
                {
                    "roleType": "primary",
                    "role": "student",
                    "org": {"href": f"{OR}/orgs/a-1", "sourcedId": "a-1", "type": "org"},
                }
            ]
            assert u["grades"] == ["05"]
        assert "Secretname" not in r.text
        disclosures = await rec.disclosures()
        assert [d.student_key for d in disclosures] == keys[1:3]  # exactly one per student released
        assert all(d.channel == "oneroster" and d.agreement_id == "agr-or" for d in disclosures)
        assert list(disclosures[0].elements) == ["enrollment.grade_level", "enrollment.school_id", "student.first_name"]

        everyone = (await rec.get(f"{OR}/students?limit=100", "vendor", **VENDOR)).json()["users"]
        assert [u["sourcedId"] for u in everyone] == keys and hidden not in r.text
        assert (await rec.get(f"{OR}/students/{hidden}", "vendor", **VENDOR)).status_code == 404

        # Incremental pull: only what changed after the stamp.
        stamp = max(u["dateLastModified"] for u in everyone)
        await apply(rec.runtime, attendance("d-a", keys[3], "2026-09-05"))
        r = await rec.client.get(
            f"{OR}/students",
            params={"filter": f"dateLastModified>'{stamp}'"},
            headers=service_env.auth("vendor", **VENDOR),
        )
        assert [u["sourcedId"] for u in r.json()["users"]] == [keys[3]]
        r = await rec.client.get(
            f"{OR}/students", params={"filter": f"sourcedId='{keys[4]}'"}, headers=service_env.auth("vendor", **VENDOR)
        )
        assert [u["sourcedId"] for u in r.json()["users"]] == [keys[4]]


@pytest.mark.parametrize(
    ("flt", "rule"),
    [
        ("givenName='Kid1'", "filter.field_unsupported"),
        ("sourcedId='a' OR sourcedId='b'", "filter.or_unsupported"),
        ("sourcedId=a", "filter.syntax"),
        ("dateLastModified>'yesterday'", "filter.date"),
    ],
)
async def test_oneroster_bad_filters_are_named(service_env: ServiceEnv, flt: str, rule: str) -> None:
    async with records_service(service_env) as rec:
        await rosterly(rec)
        r = await rec.client.get(f"{OR}/students", params={"filter": flt}, headers=service_env.auth("vendor", **VENDOR))
        assert r.status_code == 400
        assert r.json()["errors"][0] == {"field": "query.filter", "rule": rule, "message": r.json()["detail"]}


async def test_oneroster_orgs_schools_and_enrollments(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await rosterly(rec)
        await apply(
            rec.runtime, school("d-a", "a-1", "Alder"), school("d-a", "a-2", "Aspen"), school("d-b", "b-1", "Birch")
        )
        key = await student(rec, "d-a", "a-1", "Ana", "Hidden")
        await student(rec, "d-a", "a-2", "Bo", "Hidden")
        orgs = (await rec.get(f"{OR}/orgs", "vendor", **VENDOR)).json()["orgs"]
        assert [(o["sourcedId"], o["type"]) for o in orgs] == [("d-a", "district"), ("a-1", "school")]
        schools = (await rec.get(f"{OR}/schools", "vendor", **VENDOR)).json()["orgs"]
        assert [o["name"] for o in schools] == ["Alder"]
        r = await rec.client.get(
            f"{OR}/orgs", params={"filter": "type='district'"}, headers=service_env.auth("vendor", **VENDOR)
        )
        assert [o["sourcedId"] for o in r.json()["orgs"]] == ["d-a"]
        assert (await rec.get(f"{OR}/schools/b-1", "vendor", **VENDOR)).status_code == 404
        assert await rec.disclosures() == []  # organisations are not student data

        r = await rec.get(f"{OR}/enrollments", "vendor", **VENDOR)
        (enrollment,) = r.json()["enrollments"]
        assert enrollment["user"]["sourcedId"] == key and enrollment["school"]["sourcedId"] == "a-1"
        assert enrollment["beginDate"] == "2026-09-01" and enrollment["role"] == "student"
        (d,) = await rec.disclosures()
        assert d.student_key == key and list(d.elements) == ["enrollment.entry_date", "enrollment.school_id"]

        other = await student(rec, "d-a", "a-1", "Cy", "Hidden")
        auth = service_env.auth("vendor", **VENDOR)

        async def enrollment_users(**params: str) -> list[str]:
            r = await rec.client.get(f"{OR}/enrollments", params=params, headers=auth)
            assert r.status_code == 200, r.text
            return [e["user"]["sourcedId"] for e in r.json()["enrollments"]]

        both = sorted([key, other])
        assert await enrollment_users() == both
        assert await enrollment_users(limit="1", offset="1") == both[1:]
        assert await enrollment_users(filter=f"user.sourcedId='{other}'") == [other]
        assert await enrollment_users(filter="school.sourcedId='a-2'") == []  # not covered
        assert await enrollment_users(filter="beginDate>'2026-09-01'") == []
        assert await enrollment_users(filter="beginDate>='2026-09-01' AND status='active'", limit="1") == both[:1]

        # Issue 17, item 4: filtering on a field the agreement withholds answered differently
        # by its hidden value (bisection recovered a blanked beginDate in 13 requests; endDate
        # revealed who left). This agreement releases no exit dates: a 400 naming the field.
        for flt, rule in (
            ("endDate>'1900-01-01'", "filter.field_withheld"),
            ("endDate='2026-10-01' AND status='active'", "filter.field_withheld"),
            ("class.sourcedId='x'", "filter.field_unsupported"),
        ):
            r = await rec.client.get(f"{OR}/enrollments", params={"filter": flt}, headers=auth)
            assert r.status_code == 400, (flt, r.text)
            (error,) = r.json()["errors"]
            assert error["rule"] == rule and flt.split("=")[0].split(">")[0].strip() in error["message"], error
        # And an enrollment's id no longer spells out its (possibly withheld) entry date.
        ids = [e["sourcedId"] for e in (await rec.get(f"{OR}/enrollments", "vendor", **VENDOR)).json()["enrollments"]]
        assert all(i.startswith("enr_") and "2026" not in i for i in ids)


async def test_oneroster_is_for_vendors_only(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await rosterly(rec)
        key = await student(rec, "d-a", "a-1", "Ana", "Hidden")
        for role, scope in (("parent", {"students": [key]}), ("service", {}), ("compliance", {})):
            assert (await rec.get(f"{OR}/students", role, **scope)).status_code == 403
        assert (await rec.client.get(f"{OR}/students")).status_code == 401
        # A vendor whose agreement the consent service does not know gets nothing.
        r = await rec.get(f"{OR}/students", "vendor", agreement="agr-unknown", organization="Rosterly")
        assert r.status_code == 403


# --- internal transfer calls ------------------------------------------------------------


async def test_transfer_package_and_idempotent_delivery(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = await student(rec, "d-a", "a-1", "Ana", "Lopez")
        await apply(rec.runtime, attendance("d-a", key, "2026-09-02"))
        request = {
            "case_id": "case-1",
            "student_key": key,
            "from_district_id": "d-a",
            "elements": ["student.first_name", "student.last_name", "attendance.daily", "enrollment.school_id"],
        }
        assert (await rec.post("/v1/internal/transfer-packages", request, "vendor", agreement="x")).status_code == 403
        r = await rec.post("/v1/internal/transfer-packages", request, "service")
        assert r.status_code == 200, r.text
        package = r.json()
        assert package["elements"] == {"student.first_name": "Ana", "student.last_name": "Lopez"}
        assert package["attendance"]["days"] == [{"date": "2026-09-02", "category": "absent", "excused": False}]
        assert package["enrollments"] == [{"school_id": "a-1"}]
        assert "enrollment.grade_level" not in package["elements_included"]
        assert package["suspension_dates"] == [] and package["program_flags"] == []
        assert await rec.disclosures() == []  # the transfer service records the disclosure

        delivery = {
            "case_id": "case-1",
            "student_key": key,
            "to_district_id": "d-b",
            "to_school_id": "b-1",
            "package": package,
        }
        for _ in range(2):
            r = await rec.post("/v1/internal/transfer-deliveries", delivery, "service")
            assert r.status_code == 200 and r.json() == {"case_id": "case-1", "delivered": True}
        record = (await rec.get(f"/v1/districts/d-b/students/{key}", "district_staff", district="d-b")).json()
        assert record["elements"]["student.last_name"] == "Lopez"
        assert "enrollment.grade_level" not in record["elements"]  # not asked for, not sent
        # Non-PII elements a package carries join the record, unless the district has its own.
        second = {**delivery, "case_id": "case-2", "to_district_id": "d-c"}
        second["package"] = {**package, "elements": {**package["elements"], "enrollment.grade_level": "06"}}
        assert (await rec.post("/v1/internal/transfer-deliveries", second, "service")).status_code == 200
        in_c = (await rec.get(f"/v1/districts/d-c/students/{key}", "district_staff", district="d-c")).json()
        assert in_c["elements"]["enrollment.grade_level"] == "06"
        await apply(rec.runtime, enrolled("d-c", key, "c-1", "2026-11-20", grade="07"))
        in_c = (await rec.get(f"/v1/districts/d-c/students/{key}", "district_staff", district="d-c")).json()
        assert in_c["elements"]["enrollment.grade_level"] == "07"
        (prior,) = record["prior_records"]
        assert prior["case_id"] == "case-1" and prior["from_district_id"] == "d-a"
        assert prior["package"]["attendance"]["days"][0]["date"] == "2026-09-02"
        # As the service's login, row-level security shows d-b's rows only inside a d-b transaction.
        async with district_tx(rec.runtime.pool, "d-b") as conn:
            assert await conn.fetchval("SELECT count(*) FROM transfer_deliveries WHERE case_id = $1", "case-1") == 1
            sealed = await conn.fetchval(
                "SELECT sealed FROM student_elements WHERE district_id = 'd-b' AND element = 'student.last_name'"
            )
        assert b"Lopez" not in sealed
        # Sealed under d-b's keys: it opens there and not as d-a's.
        cipher = rec.runtime.require_cipher()
        assert await cipher.open("d-b", key, "student.last_name", sealed) == b"Lopez"
        with pytest.raises(Exception, match="authentication failed"):
            await cipher.open("d-a", key, "student.last_name", sealed)
        # Unknown student or element: named errors.
        r = await rec.post("/v1/internal/transfer-packages", {**request, "student_key": "stu_none"}, "service")
        assert r.status_code == 404
        r = await rec.post("/v1/internal/transfer-packages", {**request, "elements": ["student.ssn"]}, "service")
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "element.unknown"


async def test_openapi_lists_every_route_and_metrics_are_exported(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await rosterly(rec)
        key = await student(rec, "d-a", "a-1", "Ana", "Hidden")
        assert (await rec.get(f"/v1/students/{key}", "vendor", **VENDOR)).status_code == 200
        assert (
            await rec.get(f"/v1/students/{key}", "vendor", agreement="agr-none", organization="x")
        ).status_code == 403
        paths = (await rec.client.get("/openapi.json")).json()["paths"]
        for path in (
            "/v1/districts/{district_id}/students",
            "/v1/districts/{district_id}/students/{student_key}",
            "/v1/students/{student_key}",
            "/v1/students/{student_key}/amendments",
            "/v1/amendments/{amendment_id}/decision",
            "/v1/students/{student_key}/amendments/{amendment_id}/statement",
            "/v1/internal/transfer-packages",
            "/v1/internal/transfer-deliveries",
            f"{OR}/orgs",
            f"{OR}/schools",
            f"{OR}/students",
            f"{OR}/enrollments",
        ):
            assert path in paths, path
        metrics = (await rec.client.get("/metrics")).text
        assert exported(metrics, 'homeroom_records_reads_total{channel="records-api",role="vendor"}') > 0
        assert exported(metrics, 'homeroom_records_disclosures_total{channel="records-api"}') > 0
        assert exported(metrics, 'homeroom_records_denials_total{reason="agreement_inactive"}') > 0


async def test_roles_without_student_access_are_refused(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        key = await student(rec, "d-a", "a-1", "Ana", "Hidden")
        for role in ("compliance", "operator", "service"):
            for path in (f"/v1/students/{key}", f"/v1/districts/d-a/students/{key}", "/v1/districts/d-a/students"):
                r = await rec.get(path, role)
                assert r.status_code == 403, (role, path)
                assert "Ana" not in r.text
        assert (await rec.client.get(f"/v1/students/{key}")).status_code == 401
        assert await rec.disclosures() == []
