"""The command-line uploader's core against the real service, and submissions resumed after a restart."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import typer

from services.ingest import store
from services.ingest.cli import publish, route_for
from services.ingest.service import SERVICE
from tests.harness import ServiceEnv, service_under_test
from tests.services.ingest.ingest_data import enrollment, oneroster_zip, user11
from tests.services.ingest.test_api import batch, bus_events, by_change, enroll, register, staff, student


def test_route_follows_the_file_name() -> None:
    assert route_for(Path("x.zip"), None) == "oneroster"
    assert route_for(Path("x.XML"), None) == "edfi-xml"
    assert route_for(Path("x.json"), None) == "batch"
    assert route_for(Path("x.json"), "students") == "edfi/students"
    with pytest.raises(typer.BadParameter):
        route_for(Path("x.csv"), None)


async def test_publish_uploads_streams_and_waits_for_the_report(service_env: ServiceEnv, tmp_path: Path) -> None:
    env = service_env
    async with service_under_test(SERVICE, env, upload_dir=tmp_path / "u") as s:
        zip_path = tmp_path / "roster.zip"
        zip_path.write_bytes(
            oneroster_zip([user11("u1"), user11("u2", identifier="219-09-9999")], [enrollment("e1", "u1")])
        )
        sent: list[int] = []
        report = await publish(
            s.client, zip_path, district="d-1", headers=staff(env, "d-1"), on_upload=sent.append, poll_s=0.05
        )
        assert report["status"] == "completed" and report["file"] == "roster.zip"
        assert sum(sent) == zip_path.stat().st_size
        assert report["counts"]["rejected"] == 1 and report["problems_by_rule"] == {
            "ssn.forbidden": 1,
            "student.state_id_missing": 1,
        }
        again = await publish(
            s.client, zip_path, district="d-1", headers=staff(env, "d-1"), idempotency_key="k", poll_s=0.05
        )
        same = await publish(
            s.client, zip_path, district="d-1", headers=staff(env, "d-1"), idempotency_key="k", poll_s=0.05
        )
        assert again["id"] == same["id"] != report["id"]
        assert again["counts"]["unchanged"] >= 3 and again["counts"]["events"] == again["counts"]["rejected"] == 1


async def test_submissions_left_unfinished_are_resumed_on_start(service_env: ServiceEnv, tmp_path: Path) -> None:
    env = service_env
    uploads = tmp_path / "u"
    settings = await env.settings_for(SERVICE, upload_dir=uploads)
    async with service_under_test(SERVICE, env, settings=settings) as s:
        await register(s, env, "d-1", "sch-1")
        # as if the service stopped after storing two uploads: one file still there, one lost
        body = batch(student("L1", "NYS-R1"), enroll("L1"))
        kept = uploads / "kept.json"
        kept.write_bytes(body)
        ids = [uuid.uuid4(), uuid.uuid4()]
        async with s.pool.acquire() as conn:
            for sid, path in zip(ids, [kept, uploads / "lost.json"], strict=True):
                await store.insert_submission(
                    conn,
                    store.NewSubmission(
                        id=sid, district_id="d-1", format="batch", file_name="b.json", submitted_by="t",
                        bytes=len(body), sha256="x", upload_path=str(path),
                    ),
                )  # fmt: skip
    async with service_under_test(SERVICE, env, settings=settings) as s:
        from tests.services.ingest.test_api import finished

        done = await finished(s, env, "d-1", str(ids[0]))
        assert done["status"] == "completed" and done["counts"]["accepted"] == 2
        lost = await finished(s, env, "d-1", str(ids[1]))
        assert lost["status"] == "failed" and "send it again" in lost["error"]
        events = await bus_events(s, env, str(ids[0]))
        assert len(by_change(events, "student_enrolled")) == 1
        assert not kept.exists()
    assert json.loads(body)["records"][0]["type"] == "student"


def test_may_withdraw_skips_the_safety_parse_only_when_no_withdrawal_can_be_in_the_file(tmp_path: Path) -> None:
    from services.ingest.application.pipeline import may_withdraw

    def check(body: bytes, fmt: str = "batch", block: int = 1 << 20) -> bool:
        path = tmp_path / "f"
        path.write_bytes(body)
        return may_withdraw(path, fmt, block)

    assert not check(batch(student("L1", "NYS-1"), enroll("L1")))
    assert check(batch({"type": "withdraw", "student_id": "L1"}))
    assert check(b'{"records": [{"type": "withdr\\u0061w"}]}')  # an escape could spell it
    assert check(b"x" * 10 + b"change_school", block=16)  # across a block boundary
    assert check(b"<ExitWithdrawDate>", "edfi-xml") and not check(b"<EntryDate>", "edfi-xml")
    assert check(b"", "oneroster")
