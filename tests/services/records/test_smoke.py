from __future__ import annotations

from tests.harness import ServiceEnv
from tests.services.records.helpers import apply, enrolled, records_service, registered


async def test_boot_and_staff_read(service_env: ServiceEnv) -> None:
    async with records_service(service_env) as rec:
        ev = await registered(rec.runtime, "d-a", "stu_1", {"student.first_name": "Zephyrine"}, flags=["iep"])
        assert await apply(rec.runtime, ev, enrolled("d-a", "stu_1", "a-1", "2026-09-01")) == 2
        r = await rec.get("/v1/districts/d-a/students/stu_1", "district_staff", district="d-a")
        assert r.status_code == 200, r.text
        print(r.json())
        r = await rec.get("/v1/students/stu_1", "parent", students=["stu_1"])
        assert r.status_code == 200, r.text
        print(r.json(), await rec.disclosures())
