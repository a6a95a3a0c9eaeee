"""`homeroom generate`: synthetic districts for demos, tests and benchmarks.

Deterministic from a seed: the same arguments always give byte-identical files. A world
has districts with schools, students with identity, demographics and program flags,
enrollments, school-day attendance (most students attend well; a chronic-absence group,
about 12%, misses 10-30% of days, the pattern early-warning work looks for), a few
suspensions (dates only), transfers (students withdrawn from one district and enrolled in
another under the same state id) and vendor agreements.

Writers produce what districts really send: Homeroom JSON batches and OneRoster 1.2 CSV
zips (`services/ingest/formats/`). No real person's data is used; names come from short
lists and every state id starts with 9 so it can never be a New York state id.
"""

from __future__ import annotations

import csv
import io
import json
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

FIRST = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jada", "Kofi", "Lena", "Mateo", "Nia"]
FIRST += ["Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vik", "Wen", "Ximena", "Yusuf", "Zoe"]
LAST = ["Abara", "Brooks", "Castillo", "Dubois", "Evans", "Fong", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski"]
LAST += ["Lopez", "Mensah", "Nguyen", "Okafor", "Patel", "Quispe", "Rossi", "Smith", "Tanaka", "Usman", "Vargas"]
SEXES = ["female", "male", "female", "male", "unspecified"]
GRADES = ["KG", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"]


@dataclass(frozen=True, slots=True)
class School:
    id: str
    name: str
    district_id: str


@dataclass(slots=True)
class Student:
    state_id: str
    local_id: str
    district_id: str
    school_id: str
    first_name: str
    last_name: str
    birth_date: str
    sex: str
    grade: str
    iep: bool
    section_504: bool
    ell: bool
    chronic: bool
    absences: list[tuple[str, bool]] = field(default_factory=list)  # (date, excused)
    tardies: list[str] = field(default_factory=list)
    # Every other school day: a daily attendance feed marks each day, so "days enrolled"
    # (days with a daily mark) and the absence rate mean what they say.
    present: list[str] = field(default_factory=list)
    suspensions: list[str] = field(default_factory=list)


@dataclass(slots=True)
class District:
    id: str
    name: str
    schools: list[School]
    students: list[Student] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Transfer:
    state_id: str
    from_district: str
    to_district: str
    to_school: str
    exit_date: str
    entry_date: str


@dataclass(slots=True)
class World:
    seed: int
    start: date
    days: list[date]
    districts: list[District]
    transfers: list[Transfer]
    agreements: list[dict[str, Any]]

    def district(self, district_id: str) -> District:
        return next(d for d in self.districts if d.id == district_id)


def school_days(start: date, count: int) -> list[date]:
    days: list[date] = []
    day = start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def generate_world(
    *,
    seed: int = 7,
    districts: int = 2,
    schools_per_district: int = 2,
    students_per_district: int = 50,
    days: int = 5,
    transfers: int = 1,
    start: date = date(2026, 11, 2),
) -> World:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible from the seed by design
    calendar = school_days(start, days)
    world_districts: list[District] = []
    state_counter = 900_000_000
    for d in range(districts):
        district_id = f"d-{100 + d}"
        schools = [
            School(f"{district_id}-s{s + 1}", f"School {s + 1} of District {100 + d}", district_id)
            for s in range(schools_per_district)
        ]
        district = District(district_id, f"District {100 + d}", schools)
        for i in range(students_per_district):
            state_counter += 1
            chronic = rng.random() < 0.12
            student = Student(
                state_id=str(state_counter),
                local_id=f"{district_id}-{i + 1:05d}",
                district_id=district_id,
                school_id=rng.choice(schools).id,
                first_name=rng.choice(FIRST),
                last_name=rng.choice(LAST),
                birth_date=(date(2010, 1, 1) + timedelta(days=rng.randrange(0, 365 * 8))).isoformat(),
                sex=rng.choice(SEXES),
                grade=rng.choice(GRADES),
                iep=rng.random() < 0.14,
                section_504=rng.random() < 0.04,
                ell=rng.random() < 0.1,
                chronic=chronic,
            )
            miss_rate = rng.uniform(0.10, 0.30) if chronic else rng.uniform(0.0, 0.04)
            for day in calendar:
                roll = rng.random()
                if roll < miss_rate:
                    student.absences.append((day.isoformat(), rng.random() < 0.4))
                elif roll < miss_rate + 0.03:
                    student.tardies.append(day.isoformat())
                else:
                    student.present.append(day.isoformat())
            if rng.random() < 0.02:
                student.suspensions.append(rng.choice(calendar).isoformat())
            district.students.append(student)
        world_districts.append(district)
    moves: list[Transfer] = []
    moved: set[str] = set()
    if districts >= 2:
        for t in range(transfers):
            source = world_districts[t % districts]
            target = world_districts[(t + 1) % districts]
            candidates = [s for s in source.students if s.state_id not in moved]
            mover = candidates[rng.randrange(len(candidates))]
            moved.add(mover.state_id)  # each student moves at most once
            exit_day = calendar[-1]
            moves.append(
                Transfer(
                    mover.state_id,
                    source.id,
                    target.id,
                    target.schools[0].id,
                    exit_day.isoformat(),
                    (exit_day + timedelta(days=3)).isoformat(),
                )
            )
    agreements = [
        {
            "organization": "Brightpath Learning",
            "category": "vendor",
            "districts": [d.id for d in world_districts],
            "elements": ["student.first_name", "student.last_name", "enrollment.grade_level", "enrollment.school_id"],
            "purposes": ["rostering", "instruction"],
            "start_date": (start - timedelta(days=60)).isoformat(),
            "end_date": (start + timedelta(days=300)).isoformat(),
        },
        {
            "organization": "Attendance Works Analytics",
            "category": "research",
            "districts": [world_districts[0].id],
            "elements": ["attendance.daily", "attendance.summary", "enrollment.grade_level"],
            "purposes": ["attendance_support"],
            "start_date": (start - timedelta(days=30)).isoformat(),
            "end_date": (start + timedelta(days=120)).isoformat(),
        },
    ]
    return World(seed, start, calendar, world_districts, moves, agreements)


# --- Homeroom JSON batch -----------------------------------------------------------------


def student_object(s: Student) -> dict[str, Any]:
    return {
        "student.state_id": s.state_id,
        "student.local_id": s.local_id,
        "student.first_name": s.first_name,
        "student.last_name": s.last_name,
        "student.birth_date": s.birth_date,
        "student.sex": s.sex,
        "program.iep": s.iep,
        "program.section_504": s.section_504,
        "program.ell": s.ell,
    }


def batch_records(
    district: District, start: date, *, enrollments: bool = True, attendance: bool = True
) -> Iterator[dict[str, Any]]:
    """Enrollments with the student inline, then attendance and suspensions."""
    for s in district.students if enrollments else ():
        yield {
            "type": "enroll",
            "student_id": s.local_id,
            "school_id": s.school_id,
            "entry_date": (start - timedelta(days=60)).isoformat(),
            "grade_level": s.grade,
            "student": student_object(s),
        }
    if not attendance:
        return
    for s in district.students:
        for day, category, excused in daily_marks(s):
            yield {
                "type": "attendance",
                "student_id": s.local_id,
                "school_id": s.school_id,
                "date": day,
                "category": category,
                "excused": excused,
            }
        for day in s.suspensions:
            yield {
                "type": "suspension",
                "student_id": s.local_id,
                "school_id": s.school_id,
                "start_date": day,
                "end_date": day,
                "in_school": False,
            }


def daily_marks(student: Student) -> list[tuple[str, str, bool]]:
    """The student's daily attendance, one mark per school day in date order: (date, category, excused)."""
    marks = [(day, "absent", excused) for day, excused in student.absences]
    marks += [(day, "tardy", False) for day in student.tardies]
    marks += [(day, "present", False) for day in student.present]
    return sorted(marks)


def json_batch(records: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> bytes:
    return json.dumps({"format": "homeroom.batch", "version": 1, "records": list(records)}, indent=1).encode()


def transfer_batch(world: World, move: Transfer) -> tuple[bytes, bytes]:
    """The two submissions a transfer makes: the withdrawal in the old district and the
    enrollment in the new one (the new district assigns its own local id)."""
    source = world.district(move.from_district)
    mover = next(s for s in source.students if s.state_id == move.state_id)
    withdraw = {
        "type": "withdraw",
        "student_id": mover.local_id,
        "school_id": mover.school_id,
        "exit_date": move.exit_date,
        "exit_code": "transfer_out_of_district",
    }
    new_local = f"{move.to_district}-T{mover.local_id.rsplit('-', 1)[1]}"
    student = {**student_object(mover), "student.local_id": new_local}
    enroll = {
        "type": "enroll",
        "student_id": new_local,
        "school_id": move.to_school,
        "entry_date": move.entry_date,
        "grade_level": mover.grade,
        "student": student,
    }
    return json_batch([withdraw]), json_batch([enroll])


# --- OneRoster 1.2 CSV -------------------------------------------------------------------
# The column order of each OneRoster 1.2 file; the ingest tests build their files from these too.

USERS_12 = [
    "sourcedId",
    "status",
    "dateLastModified",
    "enabledUser",
    "username",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "identifier",
    "email",
    "sms",
    "phone",
    "agentSourcedIds",
    "grades",
    "password",
    "userMasterIdentifier",
    "resourceSourcedIds",
    "preferredGivenName",
    "preferredMiddleName",
    "preferredFamilyName",
    "primaryOrgSourcedId",
    "pronouns",
]
ROLES_12 = [
    "sourcedId",
    "status",
    "dateLastModified",
    "userSourcedId",
    "roleType",
    "role",
    "beginDate",
    "endDate",
    "orgSourcedId",
    "userProfileSourcedId",
]
ORGS = ["sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parentSourcedId"]
SESSIONS = [
    "sourcedId",
    "status",
    "dateLastModified",
    "title",
    "type",
    "startDate",
    "endDate",
    "parentSourcedId",
    "schoolYear",
]
CLASSES = [
    "sourcedId",
    "status",
    "dateLastModified",
    "title",
    "grades",
    "courseSourcedId",
    "classCode",
    "classType",
    "location",
    "schoolSourcedId",
    "termSourcedIds",
    "subjects",
    "subjectCodes",
    "periods",
]
ENROLLMENTS = [
    "sourcedId",
    "status",
    "dateLastModified",
    "classSourcedId",
    "schoolSourcedId",
    "userSourcedId",
    "role",
    "primary",
    "beginDate",
    "endDate",
]
DEMOGRAPHICS = [
    "sourcedId",
    "status",
    "dateLastModified",
    "birthDate",
    "sex",
    "americanIndianOrAlaskaNative",
    "asian",
    "blackOrAfricanAmerican",
    "nativeHawaiianOrOtherPacificIslander",
    "white",
    "demographicRaceTwoOrMoreRaces",
    "hispanicOrLatinoEthnicity",
    "countryOfBirthCode",
    "stateOfBirthAbbreviation",
    "cityOfBirth",
    "publicSchoolResidenceStatus",
]


def csv_text(header: list[str], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def oneroster_zip(district: District, start: date) -> bytes:
    """A OneRoster 1.2 bulk export of one district: orgs, a term, one homeroom class per
    school, student users (state id as userMasterIdentifier), roles, enrollments, demographics."""
    stamp = "2026-09-01T00:00:00Z"
    term_start, term_end = (start - timedelta(days=60)).isoformat(), (start + timedelta(days=200)).isoformat()
    orgs = [
        {
            "sourcedId": district.id,
            "status": "active",
            "dateLastModified": stamp,
            "name": district.name,
            "type": "district",
            "identifier": district.id,
        }
    ]
    orgs += [
        {
            "sourcedId": s.id,
            "status": "active",
            "dateLastModified": stamp,
            "name": s.name,
            "type": "school",
            "identifier": s.id,
            "parentSourcedId": district.id,
        }
        for s in district.schools
    ]
    sessions = [
        {
            "sourcedId": "term-1",
            "status": "active",
            "dateLastModified": stamp,
            "title": "Fall",
            "type": "term",
            "startDate": term_start,
            "endDate": term_end,
            "schoolYear": str(start.year + 1),
        }
    ]
    classes = [
        {
            "sourcedId": f"{s.id}-homeroom",
            "status": "active",
            "dateLastModified": stamp,
            "title": f"Homeroom {s.name}",
            "classType": "homeroom",
            "schoolSourcedId": s.id,
            "termSourcedIds": "term-1",
            "courseSourcedId": "",
            "classCode": "HR",
        }
        for s in district.schools
    ]
    users, roles, enrollments, demographics = [], [], [], []
    for st in district.students:
        uid = st.local_id  # the SIS id as sourcedId, as most exports do: JSON batches refer to the same id
        users.append(
            {
                "sourcedId": uid,
                "status": "active",
                "dateLastModified": stamp,
                "enabledUser": "true",
                "username": uid,
                "givenName": st.first_name,
                "familyName": st.last_name,
                "identifier": st.local_id,
                "grades": st.grade,
                "userMasterIdentifier": st.state_id,
                "primaryOrgSourcedId": st.school_id,
            }
        )
        roles.append(
            {
                "sourcedId": f"r-{uid}",
                "status": "active",
                "dateLastModified": stamp,
                "userSourcedId": uid,
                "roleType": "primary",
                "role": "student",
                "orgSourcedId": st.school_id,
            }
        )
        enrollments.append(
            {
                "sourcedId": f"e-{uid}",
                "status": "active",
                "dateLastModified": stamp,
                "classSourcedId": f"{st.school_id}-homeroom",
                "schoolSourcedId": st.school_id,
                "userSourcedId": uid,
                "role": "student",
                "primary": "true",
                "beginDate": term_start,
            }
        )
        demographics.append(
            {"sourcedId": uid, "status": "active", "dateLastModified": stamp, "birthDate": st.birth_date, "sex": st.sex}
        )
    files = {
        "orgs.csv": csv_text(ORGS, orgs),
        "academicSessions.csv": csv_text(SESSIONS, sessions),
        "classes.csv": csv_text(CLASSES, classes),
        "users.csv": csv_text(USERS_12, users),
        "roles.csv": csv_text(ROLES_12, roles),
        "enrollments.csv": csv_text(ENROLLMENTS, enrollments),
        "demographics.csv": csv_text(DEMOGRAPHICS, demographics),
    }
    manifest = [("manifest.version", "1.0"), ("oneroster.version", "1.2")]
    for name in ("academicSessions", "classes", "demographics", "enrollments", "orgs", "users", "roles", "courses"):
        manifest.append((f"file.{name}", "bulk" if f"{name}.csv" in files else "absent"))
    manifest.append(("source.systemName", "Homeroom generator"))
    files["manifest.csv"] = csv_text(["propertyName", "value"], [{"propertyName": k, "value": v} for k, v in manifest])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2026, 9, 1, 0, 0, 0))  # fixed stamp: deterministic bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name])
    return buf.getvalue()


def write_world(world: World, out: Path, formats: tuple[str, ...] = ("json", "oneroster")) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for district in world.districts:
        if "json" in formats:
            path = out / f"{district.id}.batch.json"
            path.write_bytes(json_batch(batch_records(district, world.start)))
            written.append(path)
        if "oneroster" in formats:
            path = out / f"{district.id}.oneroster.zip"
            path.write_bytes(oneroster_zip(district, world.start))
            written.append(path)
    for n, move in enumerate(world.transfers, 1):
        withdraw, enroll = transfer_batch(world, move)
        for kind, body in (("withdraw", withdraw), ("enroll", enroll)):
            path = out / f"transfer-{n}.{kind}.json"
            path.write_bytes(body)
            written.append(path)
    path = out / "agreements.json"
    path.write_text(json.dumps(world.agreements, indent=2) + "\n")
    written.append(path)
    return written
