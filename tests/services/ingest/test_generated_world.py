"""The demo's generated data (homeroom_dev/generate.py) goes through ingest without refusals."""

from __future__ import annotations

from pathlib import Path

from homeroom_dev.generate import batch_records, generate_world, json_batch, oneroster_zip
from services.ingest.service import SERVICE
from tests.harness import ServiceEnv, service_under_test
from tests.services.ingest.test_api import bus_events, by_change, register, upload


async def test_generated_json_batch_and_oneroster_zip_are_taken_whole(service_env: ServiceEnv, tmp_path: Path) -> None:
    env = service_env
    world = generate_world(students_per_district=12, days=3)
    d1, d2 = world.districts[:2]
    async with service_under_test(SERVICE, env, upload_dir=tmp_path / "u") as s:
        await register(s, env, d1.id, *[sc.id for sc in d1.schools])
        rep = await upload(s, env, d1.id, "batch", json_batch(batch_records(d1, world.start, world=world)))
        assert rep["status"] == "completed" and rep["counts"]["rejected"] == 0, rep
        assert rep["counts"]["accepted"] >= 12
        rep2 = await upload(s, env, d2.id, "oneroster", oneroster_zip(d2, world.start))
        assert rep2["status"] == "completed" and rep2["counts"]["rejected"] == 0, rep2
        events = await bus_events(s, env, rep2["id"])
        # users.csv and demographics.csv each describe the student: two partial records, one key
        keys = {e.student_key for e in by_change(events, "student_registered")}
        assert keys == {s.runtime.pseudonymizer.student_key(st.state_id) for st in d2.students}
        assert {e.school_id for e in by_change(events, "school_registered")} == {sc.id for sc in d2.schools}
