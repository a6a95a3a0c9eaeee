"""Tests that try to break the records service's privacy rules: across districts through
every endpoint and with crafted SQL, vendors outside their agreement or after it ends,
disclosures for every release, nothing readable in the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from homeroom.catalogue import CATALOGUE
from homeroom.clock import fixed, system_clock
from homeroom.events.v1.attendance_pb2 import ATTENDANCE_CATEGORY_PRESENT
from services.records import store
from tests.harness import ServiceEnv
from tests.services.records.helpers import (
    Records,
    agreement_ended,
    apply,
    attendance,
    enrolled,
    keys_destroyed,
    opt_out,
    records_service,
    registered,
    school,
    suspension,
)

NAMES_A = {"student.first_name": "Zephyrine", "student.last_name": "Quillfeather", "student.birth_date": "2015-03-04"}
NAMES_B = {"student.first_name": "Bartholomew", "student.last_name": "Xanthopoulos", "student.birth_date": "2014-01-02"}
RLS_TABLES = (
    "students",
    "student_elements",
    "enrollments",
    "attendance",
    "suspensions",
    "amendments",
    "parent_statements",
    "transfer_deliveries",
    "read_log",
    "marks_waiting",
)


@dataclass
class Seed:
    ka: str  # d-a, school a-1
    ka2: str  # d-a, school a-2
    kb: str  # d-b, school b-1
    amendment_b: str


async def seed(rec: Records) -> Seed:
    ka, ka2, kb = (f"stu_{uuid.uuid4().hex[:12]}" for _ in range(3))
    rt = rec.runtime
    await apply(
        rt,
        school("d-a", "a-1", "Alder Elementary"),
        school("d-a", "a-2", "Aspen Middle"),
        school("d-b", "b-1", "Birch Elementary"),
        await registered(rt, "d-a", ka, NAMES_A, flags=["iep"]),
        enrolled("d-a", ka, "a-1", "2026-09-01"),
        await registered(rt, "d-a", ka2, {"student.first_name": "Ottoline"}),
        enrolled("d-a", ka2, "a-2", "2026-09-01"),
        await registered(rt, "d-b", kb, NAMES_B, flags=["section_504"]),
        enrolled("d-b", kb, "b-1", "2026-09-01"),
        attendance("d-a", ka, "2026-09-02"),
        attendance("d-a", ka, "2026-09-03", ATTENDANCE_CATEGORY_PRESENT),
        attendance("d-a", ka, "2025-05-01"),  # before any agreement's term
        attendance("d-b", kb, "2026-09-02"),
        suspension("d-a", ka, "2026-10-01", "2026-10-02"),
    )
    r = await rec.post(
        f"/v1/students/{kb}/amendments",
        {"element": "student.last_name", "requested_value": "Xanthopoulou", "reason": "misspelt"},
        "parent",
        students=[kb],
    )
    assert r.status_code == 201, r.text
    return Seed(ka, ka2, kb, r.json()["id"])


async def acme(rec: Records) -> None:
    """Acme Learning's agreement with district A, active in the real consent service."""
    await rec.agreement(
        "agr-1",
        "Acme Learning",
        districts=["d-a"],
        elements=["student.first_name", "enrollment.grade_level", "enrollment.school_id", "attendance.daily"],
        start_date="2026-01-01",
        end_date="2027-06-30",
    )


def vendor(agreement: str = "agr-1") -> dict[str, str]:
    return {"agreement": agreement, "organization": "Acme Learning"}


# --- district isolation -------------------------------------------------------------------


async def test_district_a_staff_cannot_reach_district_b_through_any_endpoint(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        s = await seed(rec)
        a_staff = {"district": "d-a"}
        attempts = [
            ("GET", "/v1/districts/d-b/students", None),
            ("GET", f"/v1/districts/d-b/students/{s.kb}", None),
            ("GET", f"/v1/districts/d-a/students/{s.kb}", None),  # own district in the path, B's key
            ("GET", f"/v1/students/{s.kb}", None),
            ("GET", "/v1/districts/d-b/amendments", None),
            ("POST", f"/v1/amendments/{s.amendment_b}/decision", {"outcome": "accepted", "reason": "x"}),
        ]
        for role, scope in (("district_staff", a_staff), ("school_staff", {"district": "d-a", "schools": ["a-1"]})):
            for method, path, body in attempts:
                headers = service_env.auth(role, **scope)
                r = await rec.client.request(method, path, json=body, headers=headers)
                assert r.status_code == 404, (role, method, path, r.status_code, r.text)
                assert "Bartholomew" not in r.text and "Xanthopoulos" not in r.text
        # The amendment was not decided by the failed attempts.
        r = await rec.get("/v1/districts/d-b/amendments", "district_staff", district="d-b")
        assert [a["status"] for a in r.json()["amendments"]] == ["pending"]
        # Listing their own district never includes B's student.
        r = await rec.get("/v1/districts/d-a/students?limit=1000", "district_staff", district="d-a")
        keys = {x["student_key"] for x in r.json()["students"]}
        assert keys == {s.ka, s.ka2}
        # Staff tokens are refused on the vendor and service surfaces outright.
        for path in ("/ims/oneroster/rostering/v1p2/students", "/ims/oneroster/rostering/v1p2/orgs"):
            assert (await rec.get(path, "district_staff", district="d-a")).status_code == 403
        r = await rec.post(
            "/v1/internal/transfer-packages",
            {"case_id": "c", "student_key": s.kb, "from_district_id": "d-b", "elements": ["student.first_name"]},
            "district_staff",
            district="d-a",
        )
        assert r.status_code == 403
        # Nothing was released, so nothing was disclosed.
        assert await rec.disclosures() == []


async def test_school_staff_see_only_current_students_of_their_schools(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        s = await seed(rec)
        scope = {"district": "d-a", "schools": ["a-1"]}
        assert (await rec.get(f"/v1/districts/d-a/students/{s.ka}", "school_staff", **scope)).status_code == 200
        assert (await rec.get(f"/v1/districts/d-a/students/{s.ka2}", "school_staff", **scope)).status_code == 404
        r = await rec.get("/v1/districts/d-a/students", "school_staff", **scope)
        assert [x["student_key"] for x in r.json()["students"]] == [s.ka]
        r = await rec.get("/v1/districts/d-a/students?school_id=a-2", "school_staff", **scope)
        assert r.json()["students"] == []


async def test_row_level_security_returns_nothing_for_the_wrong_district(service_env: ServiceEnv) -> None:
    """A crafted query as the app role, with no WHERE clause at all or one naming the other
    district, sees only the district its transaction is set to; unset, it sees nothing."""
    async with records_service(service_env) as rec:
        s = await seed(rec)
        async with rec.runtime.pool.acquire() as conn:
            for table in RLS_TABLES:
                async with conn.transaction():
                    await conn.execute("SET LOCAL ROLE homeroom_records_app")
                    assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # setting unset  # noqa: S608
                    await conn.execute("SELECT set_config('homeroom.district_id', 'd-a', true)")
                    assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE district_id = 'd-b'") == 0, table  # noqa: S608
                    districts = {r[0] for r in await conn.fetch(f"SELECT district_id FROM {table}")}  # noqa: S608
                    assert districts <= {"d-a"}, table
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE homeroom_records_app")
                await conn.execute("SELECT set_config('homeroom.district_id', 'd-a', true)")
                rows = await conn.fetch("SELECT student_key FROM students")
                assert {r[0] for r in rows} == {s.ka, s.ka2}
                rows = await conn.fetch("SELECT * FROM students WHERE student_key = $1 OR true", s.kb)
                assert s.kb not in {r["student_key"] for r in rows}
            # Writing a row for another district is refused by the policy's WITH CHECK.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SET LOCAL ROLE homeroom_records_app")
                    await conn.execute("SELECT set_config('homeroom.district_id', 'd-a', true)")
                    await conn.execute("INSERT INTO students (district_id, student_key) VALUES ('d-b', 'stu_evil')")
            # Updating B's rows from A's setting touches nothing.
            async with conn.transaction():
                await conn.execute("SET LOCAL ROLE homeroom_records_app")
                await conn.execute("SELECT set_config('homeroom.district_id', 'd-a', true)")
                assert await conn.execute("DELETE FROM attendance WHERE district_id = 'd-b'") == "DELETE 0"
            # The app role cannot switch the policy off.
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                async with conn.transaction():
                    await conn.execute("SET LOCAL ROLE homeroom_records_app")
                    await conn.execute("ALTER TABLE students DISABLE ROW LEVEL SECURITY")
        # The service's own transactions run as the app role, confined to one district.
        async with store.district_tx(rec.runtime.pool, "d-b") as conn:
            assert await conn.fetchval("SELECT current_user") == "homeroom_records_app"
            assert {r[0] for r in await conn.fetch("SELECT student_key FROM students")} == {s.kb}
        async with rec.admin.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") != "homeroom_records_app"  # reset after commit
            forced = await conn.fetch(
                "SELECT relname FROM pg_class WHERE relrowsecurity AND relforcerowsecurity AND relname = ANY($1)",
                list(RLS_TABLES),
            )
            assert {r[0] for r in forced} == set(RLS_TABLES)


async def test_database_holds_no_plaintext_names(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        s = await seed(rec)
        r = await rec.post(
            f"/v1/students/{s.ka}/amendments",
            {"element": "student.first_name", "requested_value": "Zephyrina", "reason": "Zephyrine is misspelt"},
            "parent",
            students=[s.ka],
        )
        assert r.status_code == 201
        assert (await rec.get(f"/v1/students/{s.ka}", "parent", students=[s.ka])).status_code == 200
        dump = bytearray()
        async with rec.admin.acquire() as conn:
            tables = [
                r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            ]
            for table in tables:
                for row in await conn.fetch(f'SELECT * FROM "{table}"'):  # as the owner: every district  # noqa: S608
                    for value in row.values():
                        dump += value if isinstance(value, bytes) else str(value).encode()
        assert len(dump) > 1000
        for secret in [*NAMES_A.values(), *NAMES_B.values(), "Zephyrina", "misspelt", '["iep"]', '["section_504"]']:
            assert secret.encode() not in bytes(dump), secret


# --- parents ----------------------------------------------------------------------------


async def test_parent_reads_own_child_in_full_with_one_disclosure(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        s = await seed(rec)
        r = await rec.get(f"/v1/students/{s.ka}", "parent", students=[s.ka])
        assert r.status_code == 200, r.text
        (record,) = r.json()["records"]
        assert record["elements"]["student.first_name"] == "Zephyrine"
        assert record["program_flags"] == ["iep"]
        assert [d["date"] for d in record["attendance"]["days"]] == ["2025-05-01", "2026-09-02", "2026-09-03"]
        assert record["suspension_dates"] == [
            {"start_date": "2026-10-01", "end_date": "2026-10-02", "in_school": False}
        ]
        (d,) = await rec.disclosures()
        assert d.student_key == s.ka and d.district_id == "d-a" and d.channel == "records-api"
        assert d.record_required is False and d.requester.role == "parent"
        assert d.legal_basis == "FERPA 99.10 parent inspection" and d.decision_id
        assert "student.first_name" in d.elements and all(e in CATALOGUE for e in d.elements)
        assert len(await rec.read_log()) == 1
        # Another child's key, or a parent of someone else: nothing, and nothing disclosed.
        assert (await rec.get(f"/v1/students/{s.kb}", "parent", students=[s.ka])).status_code == 404
        assert len(await rec.disclosures()) == 1


# --- vendors ----------------------------------------------------------------------------


async def test_vendor_gets_only_agreement_elements_and_dates(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        r = await rec.get(f"/v1/students/{s.ka}", "vendor", **vendor())
        assert r.status_code == 200, r.text
        (record,) = r.json()["records"]
        assert record["elements"] == {"enrollment.grade_level": "05", "student.first_name": "Zephyrine"}
        assert "Quillfeather" not in r.text and "2015-03-04" not in r.text
        assert record["program_flags"] == [] and "suspension_dates" not in record
        assert "amendments" not in record and "directory_opt_out" not in record
        assert record["enrollments"] == [{"school_id": "a-1", "grade_level": "05"}]
        # Attendance only inside the agreement's term (2026-01-01 .. 2027-06-30).
        assert [d["date"] for d in record["attendance"]["days"]] == ["2026-09-02", "2026-09-03"]
        assert "summary" not in record["attendance"] and "periods" not in record["attendance"]
        # Asking for elements outside the agreement gets none of them.
        r = await rec.client.get(
            f"/v1/students/{s.ka}",
            params={"elements": ["student.last_name", "program.iep", "student.birth_date"]},
            headers=service_env.auth("vendor", **vendor()),
        )
        assert r.status_code == 404, r.text  # as for a key that does not exist (issue 17, item 8)
        assert "Quillfeather" not in r.text
        r = await rec.client.get(
            f"/v1/students/{s.ka}",
            params={"elements": ["student.last_name", "student.first_name"]},
            headers=service_env.auth("vendor", **vendor()),
        )
        assert r.json()["records"][0]["elements"] == {"student.first_name": "Zephyrine"}
        # A district the agreement does not cover: nothing.
        r = await rec.get(f"/v1/students/{s.kb}", "vendor", **vendor())
        assert r.status_code == 404 and "d-b" not in r.text
        # Unknown element names are a 422 naming the element, not silently ignored.
        r = await rec.client.get(
            f"/v1/students/{s.ka}", params={"elements": ["student.ssn"]}, headers=service_env.auth("vendor", **vendor())
        )
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "element.unknown"
        disclosures = await rec.disclosures()
        assert len(disclosures) == 2  # the two reads that released data
        assert list(disclosures[0].elements) == [
            "attendance.daily",
            "enrollment.grade_level",
            "enrollment.school_id",
            "student.first_name",
        ]
        assert list(disclosures[1].elements) == ["student.first_name"]
        for d in disclosures:
            assert d.agreement_id == "agr-1" and d.record_required and d.requester.organization == "Acme Learning"


async def test_directory_opt_out_withholds_directory_elements_from_vendors(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        await apply(rec.runtime, opt_out("d-a", s.ka))
        await rec.consent_opt_out("d-a", s.ka)
        r = await rec.get(f"/v1/students/{s.ka}", "vendor", **vendor())
        assert r.status_code == 200
        assert "student.first_name" not in r.json()["records"][0]["elements"]
        assert "Zephyrine" not in r.text
        staff = await rec.get(f"/v1/districts/d-a/students/{s.ka}", "district_staff", district="d-a")
        assert staff.json()["directory_opt_out"] is True


async def test_vendor_gets_nothing_after_the_agreement_ends(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        assert (await rec.get(f"/v1/students/{s.ka}", "vendor", **vendor())).status_code == 200
        before = len(await rec.disclosures())
        assert rec.consent is not None
        rec.consent.runtime.clock = fixed(datetime(2027, 7, 15, tzinfo=UTC))  # consent's today: the term has ended
        paths = [f"/v1/students/{s.ka}"] + [
            f"/ims/oneroster/rostering/v1p2/{p}" for p in ("students", "enrollments", "orgs", f"students/{s.ka}")
        ]
        for path in paths:
            r = await rec.get(path, "vendor", **vendor())
            assert r.status_code == 403, (path, r.status_code, r.text)
            assert "Zephyrine" not in r.text
        # Even were the consent service to answer "active", the local record of the
        # agreement_ended event stops every read.
        rec.consent.runtime.clock = system_clock  # consent answers "active" again
        await apply(rec.runtime, agreement_ended("agr-1"))
        for path in paths:
            r = await rec.get(path, "vendor", **vendor())
            assert r.status_code == 403 and r.json()["reason"] == "agreement_ended", path
        assert len(await rec.disclosures()) == before


async def test_consent_unreachable_fails_closed(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        database = str(rec.runtime.settings.database_url)
    # Records again on the same data, its consent service down: real HTTP to a port nothing
    # listens on (connection refused).
    down = httpx.AsyncHTTPTransport()
    async with records_service(
        service_env, consent=down, database_url=database, consent_url="http://127.0.0.1:9"
    ) as rec:
        for role, scope in (("vendor", vendor()), ("parent", {"students": [s.ka]})):
            r = await rec.get(f"/v1/students/{s.ka}", role, **scope)
            assert r.status_code == 503, r.text
            assert "Zephyrine" not in r.text
        r = await rec.get("/ims/oneroster/rostering/v1p2/students", "vendor", **vendor())
        assert r.status_code == 503
        # The owning district's staff do not need the consent service.
        r = await rec.get(f"/v1/districts/d-a/students/{s.ka}", "district_staff", district="d-a")
        assert r.status_code == 200
        assert await rec.disclosures() == []
        assert await rec.read_log() == []


async def test_a_read_whose_disclosure_cannot_be_recorded_returns_no_data(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        async with rec.admin.acquire() as conn:
            await conn.execute("REVOKE INSERT ON outbox FROM homeroom_records_app")
        for role, scope in (("vendor", vendor()), ("parent", {"students": [s.ka]})):
            r = await rec.get(f"/v1/students/{s.ka}", role, **scope)
            assert r.status_code == 500, r.text
            assert "Zephyrine" not in r.text
        r = await rec.get("/ims/oneroster/rostering/v1p2/students", "vendor", **vendor())
        assert r.status_code == 500 and "Zephyrine" not in r.text
        assert await rec.read_log() == []  # the read-log row rolled back with the event


async def test_shredded_student_reads_as_destroyed_never_partial(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        await rec.runtime.require_cipher().destroy_subject("d-a", s.ka)
        for role, path, scope in (
            ("district_staff", f"/v1/districts/d-a/students/{s.ka}", {"district": "d-a"}),
            ("parent", f"/v1/students/{s.ka}", {"students": [s.ka]}),
            ("vendor", f"/v1/students/{s.ka}", vendor()),
        ):
            r = await rec.get(path, role, **scope)
            assert r.status_code == 410, (role, r.text)
            assert r.json()["type"] == "/problems/destroyed"
            assert "Zephyrine" not in r.text and "2026-09-02" not in r.text
        assert await rec.disclosures() == []
        # Other students are untouched.
        r = await rec.get(f"/v1/districts/d-a/students/{s.ka2}", "district_staff", district="d-a")
        assert r.status_code == 200


async def test_keys_destroyed_event_drops_the_rows_and_keeps_a_tombstone(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        await acme(rec)
        s = await seed(rec)
        await rec.runtime.require_cipher().destroy_subject("d-a", s.ka)
        await apply(rec.runtime, keys_destroyed("d-a", "student", s.ka))
        await apply(rec.runtime, keys_destroyed("d-a", "student", s.ka))  # a replay changes nothing
        async with rec.admin.acquire() as conn:
            for table in ("student_elements", "enrollments", "attendance", "suspensions"):
                assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE student_key = $1", s.ka) == 0  # noqa: S608
            assert await conn.fetchval("SELECT destroyed_at IS NOT NULL FROM students WHERE student_key = $1", s.ka)
        r = await rec.get(f"/v1/districts/d-a/students/{s.ka}", "district_staff", district="d-a")
        assert r.status_code == 410
        listed = await rec.get("/v1/districts/d-a/students", "district_staff", district="d-a")
        assert s.ka not in listed.text
        r = await rec.get("/ims/oneroster/rostering/v1p2/students", "vendor", **vendor())
        assert s.ka not in r.text and s.ka2 in r.text
        # District B is untouched by district A's shredding.
        r = await rec.get(f"/v1/districts/d-b/students/{s.kb}", "district_staff", district="d-b")
        assert r.status_code == 200
