"""The synthetic data generator: deterministic, realistic in shape, and accepted by ingest's parsers."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date
from pathlib import Path

from homeroom_dev.generate import Student, batch_records, generate_world, json_batch, oneroster_zip, transfer_batch
from services.ingest.formats.batch import parse_batch
from services.ingest.formats.oneroster_csv import parse_oneroster
from services.ingest.parsed_records import RecordError

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, b, c = (generate_world(seed=s, students_per_district=40) for s in (3, 3, 4))
    assert oneroster_zip(a.districts[0], a.start) == oneroster_zip(b.districts[0], b.start)
    assert json_batch(batch_records(a.districts[1], a.start)) == json_batch(batch_records(b.districts[1], b.start))
    assert oneroster_zip(a.districts[0], a.start) != oneroster_zip(c.districts[0], c.start)


def test_attendance_has_a_chronic_absence_group() -> None:
    world = generate_world(seed=11, districts=1, students_per_district=2000, days=20, transfers=0)
    students = world.districts[0].students
    chronic = [s for s in students if s.chronic]
    assert 0.08 < len(chronic) / len(students) < 0.16

    def rate(group: list[Student]) -> float:
        return sum(len(s.absences) for s in group) / (len(group) * 20)

    assert rate(chronic) >= 0.10 and rate([s for s in students if not s.chronic]) < 0.05
    assert len({s.state_id for s in students}) == len(students), "state ids must be unique"


def test_every_generated_record_passes_the_ingest_parsers() -> None:
    world = generate_world(seed=5, students_per_district=60, days=10, transfers=2)
    for district in world.districts:
        roster = list(parse_oneroster(io.BytesIO(oneroster_zip(district, world.start))))
        batch = list(parse_batch(io.BytesIO(json_batch(batch_records(district, world.start)))))
        assert [i for i in roster + batch if isinstance(i, RecordError)] == []
        assert len(batch) >= len(district.students)
    for move in world.transfers:
        assert move.from_district != move.to_district
        for body in transfer_batch(world, move):
            assert [i for i in parse_batch(io.BytesIO(body)) if isinstance(i, RecordError)] == []


def test_cli_writes_the_files_and_refuses_an_unknown_format(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "homeroom_dev", "generate", "--out", str(tmp_path), "--students", "5"]
    done = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, check=True)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "d-100.oneroster.zip" in names and "d-101.batch.json" in names and "agreements.json" in names
    assert "transfer-1.enroll.json" in names and done.stdout.count("wrote") == len(names)
    bad = subprocess.run([*run, "--format", "xlsx"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown format xlsx" in bad.stderr


def test_ed_fi_xml_and_extended_oneroster_use_the_standards_optional_parts(tmp_path: Path) -> None:
    """`./run generate --format edfi-xml --format oneroster-ext`: the same paths as real
    exports (optional elements dropped with a warning, nothing refused), byte-identical per seed."""
    from homeroom_dev.generate import EDFI_ORDER, edfi_xml_files, oneroster_zip
    from services.ingest.check import check_files

    world = generate_world(seed=3, students_per_district=20, days=10)
    district = world.districts[0]
    files = edfi_xml_files(district, world)
    assert files == edfi_xml_files(district, generate_world(seed=3, students_per_district=20, days=10))
    for name in EDFI_ORDER:
        (tmp_path / name).write_bytes(files[name])
    reports = check_files([tmp_path / n for n in EDFI_ORDER], today=date(2026, 12, 1))
    assert [e for r in reports for e in r.refusals()] == []
    dropped = {n["name"] for r in reports for n in r.not_collected}
    assert {
        "Student/Name/PersonalTitlePrefix",
        "StudentSchoolAttendanceEvent/AttendanceEvent/AttendanceEventReason",
    } <= dropped
    by_file = {r.file: r for r in reports}
    assert by_file["Student.xml"].accepted == 20 and by_file["StudentEnrollment.xml"].accepted == 40
    (tmp_path / "or.zip").write_bytes(oneroster_zip(district, world.start, extensions=True))
    (report,) = check_files([tmp_path / "or.zip"], today=date(2026, 12, 1))
    assert report.rejected == 0 and {"password", "metadata.nickname", "ext_lms_guid"} <= {
        n["name"] for n in report.not_collected
    }
