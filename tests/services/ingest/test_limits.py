"""Issue 17, item 6: one small zip stalled ingest for every district.

A 763 KiB OneRoster zip expanding 343:1 to 256 MiB was accepted and held a worker for
128 s (6.9 million warnings), with an 8 GiB expanded-size limit and two submissions at
once across all districts. Now: compression ratio and expanded size are bounded per entry
and per upload, warnings kept per submission are capped (counted beyond), and a freed
worker goes to the district that has waited longest.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.ingest.application.jobs import FairSlots, Ingestor, Job
from services.ingest.formats import ParseOptions
from services.ingest.formats.oneroster_csv import OneRosterUpload
from services.ingest.parsed_records import RecordError
from services.ingest.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, service_under_test
from tests.services.ingest.ingest_data import manifest, oneroster_zip, user11


def bomb(rows: int = 400_000) -> bytes:
    """A OneRoster zip whose users.csv is one row repeated: a few hundred KiB expanding >100:1."""
    header = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName\n"
    row = "s1,active,2024-09-01T00:00:00Z,true,sch-1,student,u1,Ana,Lopez\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.csv", manifest(users="bulk"))
        zf.writestr("users.csv", header + row * rows)
    return buf.getvalue()


def _errors(data: bytes, opts: ParseOptions | None = None) -> list[RecordError]:
    upload = OneRosterUpload(io.BytesIO(data), opts=opts or ParseOptions())
    return [i for i in upload if isinstance(i, RecordError)]


def test_a_zip_bomb_is_refused_before_a_row_is_read() -> None:
    data = bomb()
    assert len(data) < 200_000
    (error,) = _errors(data)
    assert error.rule == "zip.compression_ratio" and "users.csv" in error.message, error
    # Per entry and per upload, each limit on its own.
    plain = oneroster_zip([user11(f"s{i}") for i in range(50)], [])
    assert _errors(plain) == [] or all(e.rule != "zip.compression_ratio" for e in _errors(plain))
    assert [e.rule for e in _errors(plain, ParseOptions(max_member_bytes=100))] == ["zip.entry_too_large"]
    assert [e.rule for e in _errors(plain, ParseOptions(max_uncompressed_bytes=1000))] == ["file.too_large"]
    assert [e.rule for e in _errors(plain, ParseOptions(max_compression_ratio=1.5))] == ["zip.compression_ratio"]


@pytest.fixture
async def svc(service_env: ServiceEnv, tmp_path: Path) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(SERVICE, service_env, upload_dir=tmp_path / "uploads", max_warnings_kept=3) as s:
        yield s


async def _report(svc: ServiceUnderTest, env: ServiceEnv, path: str, body: bytes) -> dict[str, Any]:
    headers = env.auth("district_staff", subject="staff-d-1", district="d-1")
    r = await svc.client.post(f"/v1/districts/d-1/submissions/{path}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    for _ in range(600):
        report = (await svc.client.get(f"/v1/submissions/{sid}", headers=headers)).json()
        if report["status"] in ("completed", "failed", "held"):
            return dict(report)
        await asyncio.sleep(0.05)
    raise AssertionError("the submission did not finish")


async def test_the_bomb_upload_fails_fast_and_warnings_are_capped(
    svc: ServiceUnderTest, service_env: ServiceEnv
) -> None:
    report = await _report(svc, service_env, "oneroster", bomb())
    assert report["counts"]["accepted"] == 0 and report["counts"]["warned"] == 0, report
    problems = json.dumps(report)
    assert "zip.compression_ratio" in problems, report
    # Ten students without a state id: ten warnings, three kept, all ten counted.
    records = [
        {"type": "student", "student_id": f"L{i}", "student": {"student.first_name": "A", "student.last_name": "B"}}
        for i in range(10)
    ]
    body = json.dumps({"format": "homeroom.batch", "version": 1, "records": records}).encode()
    report = await _report(svc, service_env, "batch", body)
    assert report["counts"]["warned"] == 10, report
    headers = service_env.auth("district_staff", subject="staff-d-1", district="d-1")
    kept = (await svc.client.get(f"/v1/submissions/{report['id']}/problems", headers=headers)).json()
    warnings = [p for p in kept["problems"] if p["rule"] == "student.state_id_missing"]
    assert len(warnings) == 3, kept


async def test_a_freed_worker_goes_to_the_district_that_waited() -> None:
    slots = FairSlots(total=2, per_district=1)
    order: list[str] = []
    gates = {name: asyncio.Event() for name in ("a1", "a2", "a3", "b1", "c1")}

    async def job(name: str) -> None:
        async with slots.slot(name[0]):
            order.append(name)
            await gates[name].wait()

    tasks = [asyncio.create_task(job(n)) for n in ("a1", "a2", "a3")]
    await asyncio.sleep(0.01)
    assert order == ["a1"]  # one district never takes both workers
    tasks += [asyncio.create_task(job("b1")), asyncio.create_task(job("c1"))]
    await asyncio.sleep(0.01)
    assert order == ["a1", "b1"]  # b arrived after a2 and a3, yet starts at once
    gates["a1"].set()
    await asyncio.sleep(0.01)
    assert order == ["a1", "b1", "a2"]  # district a has waited longest (a2 came before c1)
    gates["b1"].set()
    await asyncio.sleep(0.01)
    assert order == ["a1", "b1", "a2", "c1"]  # round robin: c before a's third upload
    for name in ("a2", "c1", "a3"):
        gates[name].set()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["a1", "b1", "a2", "c1", "a3"] and slots.running == {}


async def test_a_small_upload_never_waits_behind_its_districts_bulk_file(svc: ServiceUnderTest, tmp_path: Path) -> None:
    """A transfer's enrollment (a few hundred bytes) starts while its district's bulk
    attendance file holds the district's bulk slot; a second bulk file of that district waits."""
    ingestor = svc.runtime.state.ingestor
    assert isinstance(ingestor, Ingestor)
    small_limit = ingestor.settings.small_upload_bytes
    files = {"bulk1": small_limit + 1, "bulk2": small_limit + 1, "enroll": 300}
    jobs = {}
    for name, size in files.items():
        path = tmp_path / name
        path.write_bytes(b" " * size)
        jobs[name] = Job(uuid.uuid4(), "d-1", "batch", name, path)
    order: list[str] = []
    gates = {name: asyncio.Event() for name in files}

    async def run(name: str) -> None:
        async with ingestor.slot(jobs[name]):
            order.append(name)
            await gates[name].wait()

    tasks = [asyncio.create_task(run(n)) for n in ("bulk1", "bulk2", "enroll")]
    await asyncio.sleep(0.01)
    assert order == ["bulk1", "enroll"]  # the enrollment did not queue behind bulk2
    gates["bulk1"].set()
    await asyncio.sleep(0.01)
    assert order == ["bulk1", "enroll", "bulk2"]  # bulk files of one district: one at a time, in order
    for gate in gates.values():
        gate.set()
    await asyncio.gather(*tasks)
