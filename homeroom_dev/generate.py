"""`./run generate`: synthetic districts for demos, tests and benchmarks.

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

import io
import json
import random
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from homeroom.calendar import Term, school_year, school_year_label
from homeroom.oneroster_columns import CLASSES, DEMOGRAPHICS, ENROLLMENTS, ORGS, ROLES_12, SESSIONS, USERS_12, csv_text

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
    first_district: int = 100,
) -> World:
    """`first_district` numbers the districts (d-100, d-101 by default) and offsets the state ids
    with them, so worlds generated with different numbers share no district and no student."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible from the seed by design
    calendar = school_days(start, days)
    world_districts: list[District] = []
    state_counter = 900_000_000 + (first_district - 100) * 10_000
    for d in range(districts):
        number = first_district + d
        district_id = f"d-{number}"
        schools = [
            School(f"{district_id}-s{s + 1}", f"School {s + 1} of District {number}", district_id)
            for s in range(schools_per_district)
        ]
        district = District(district_id, f"District {number}", schools)
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


def school_term(world: World) -> Term:
    """The generated school days as one term: they are consecutive weekdays, so the term's
    weekdays are exactly the days attendance is generated for."""
    return Term("Generated term", world.days[0], world.days[-1], len(world.days))


def calendar_days_off(world: World) -> list[date]:
    """Listed days off inside the term (none: the generated days are consecutive weekdays)."""
    return []


def calendar_record(world: World, school_id: str) -> dict[str, Any]:
    """The school's calendar as a Homeroom batch record."""
    term = school_term(world)
    return {
        "type": "calendar",
        "school_id": school_id,
        "school_year": school_year_label(school_year(term.begin)),
        "terms": [
            {
                "name": term.name,
                "begin_date": term.begin.isoformat(),
                "end_date": term.end.isoformat(),
                "instructional_days": term.declared_days,
            }
        ],
        "days": [{"date": d.isoformat(), "instructional": False} for d in calendar_days_off(world)],
    }


def batch_records(
    district: District,
    start: date,
    *,
    enrollments: bool = True,
    attendance: bool = True,
    world: World | None = None,
) -> Iterator[dict[str, Any]]:
    """The schools' calendars (when `world` is given), enrollments with the student inline,
    then attendance and suspensions."""
    if world is not None:
        for school in district.schools:
            yield calendar_record(world, school.id)
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


def oneroster_zip(district: District, start: date, *, extensions: bool = False) -> bytes:
    """A OneRoster 1.2 bulk export of one district: orgs, a term, one homeroom class per
    school, student users (state id as userMasterIdentifier), roles, enrollments, demographics.

    With ``extensions`` it is written as real systems write it: ``metadata.*`` and vendor
    ``ext_*`` columns, passwords and preferred names filled in, a byte-order mark, a class
    title with a quoted line break and a trailing empty header column."""
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
    users_header, classes_header = USERS_12, CLASSES
    if extensions:
        users_header = [*USERS_12, "metadata.nickname", "ext_lms_guid"]
        classes_header = [*CLASSES, ""]  # a trailing comma in the header, as some exports write it
        for n, row in enumerate(users):
            row["password"] = f"Spring{2026 + n % 3}!"
            row["preferredGivenName"] = row["givenName"][:3]
            row["pronouns"] = "they/them" if n % 7 == 0 else ""
            row["metadata.nickname"] = row["givenName"][:2]
            row["ext_lms_guid"] = f"lms-{n:06d}"
        for row in classes:
            row["title"] = f"{row['title']}\nRoom {len(row['title'])}"
            row[""] = ""
    files = {
        "orgs.csv": csv_text(ORGS, orgs),
        "academicSessions.csv": csv_text(SESSIONS, sessions),
        "classes.csv": csv_text(classes_header, classes),
        "users.csv": ("\ufeff" if extensions else "") + csv_text(users_header, users),
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
            zf.writestr(info, files[name].encode("utf-8"))
    return buf.getvalue()


def write_world(world: World, out: Path, formats: tuple[str, ...] = ("json", "oneroster")) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for district in world.districts:
        if "edfi-xml" in formats:
            folder = out / f"{district.id}.edfi"
            folder.mkdir(exist_ok=True)
            for name, body in edfi_xml_files(district, world).items():
                path = folder / name
                path.write_bytes(body)
                written.append(path)
        if "json" in formats:
            path = out / f"{district.id}.batch.json"
            path.write_bytes(json_batch(batch_records(district, world.start, world=world)))
            written.append(path)
        if "oneroster" in formats:
            path = out / f"{district.id}.oneroster.zip"
            path.write_bytes(oneroster_zip(district, world.start, extensions="oneroster-ext" in formats))
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


# --- Ed-Fi XML interchanges (Data Standard 5.2 shapes, with the standard's optional elements) -----
# What a district's Ed-Fi bulk export looks like: descriptor URIs, <AttendanceEvent> wrappers and the
# optional elements Homeroom does not collect (title prefixes, preferred names, attendance reasons,
# length-difference reasons), so the demo and benchmarks take the same paths as real files.

EDFI_NAMESPACE = "http://ed-fi.org/5.2.0"
_GRADE_DESCRIPTORS = {
    "KG": "Kindergarten",
    **{f"{i:02d}": f"{w.capitalize()} grade" for i, w in enumerate(
        ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
         "twelfth"], start=1)},
}  # fmt: skip
_TITLES = ["Mr", "Ms", "Mrs", "Dr", "Mx"]


@dataclass(frozen=True, slots=True)
class EdFiEnrollment:
    """One student's school enrollment as an Ed-Fi StudentSchoolAssociation writes it."""

    student_id: str
    school_id: str
    entry_date: str
    grade: str = "09"
    exit_date: str | None = None


def _x(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _descriptor(kind: str, code: str) -> str:
    return f"uri://ed-fi.org/{kind}Descriptor#{code}"


def _interchange(name: str, body: Iterator[str]) -> Iterator[str]:
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n<Interchange{name} xmlns="{EDFI_NAMESPACE}">\n'
    yield from body
    yield f"</Interchange{name}>\n"


def _student_ref(student_id: str) -> str:
    return f"<StudentReference><StudentIdentity><StudentUniqueId>{_x(student_id)}</StudentUniqueId></StudentIdentity></StudentReference>"  # noqa: E501


def _school_ref(school_id: str, tag: str = "SchoolReference") -> str:
    return f"<{tag}><SchoolIdentity><SchoolId>{_x(school_id)}</SchoolId></SchoolIdentity></{tag}>"


def edfi_enrollment_records(enrollments: Iterable[EdFiEnrollment], *, optional: bool = True) -> Iterator[str]:
    """StudentSchoolAssociation records, one string each (streamable: the benchmark writes 17.5 MB)."""
    for n, e in enumerate(enrollments):
        parts = [
            "\t<StudentSchoolAssociation>",
            _student_ref(e.student_id),
            _school_ref(e.school_id),
        ]
        if optional:
            parts.append("<PrimarySchool>true</PrimarySchool>")
        parts.append(f"<EntryDate>{e.entry_date}</EntryDate>")
        parts.append(
            f"<EntryGradeLevel>{_descriptor('GradeLevel', _GRADE_DESCRIPTORS.get(e.grade, 'Ninth grade'))}</EntryGradeLevel>"  # noqa: E501
        )
        if optional:
            parts.append(f"<EntryType>{_descriptor('EntryType', 'Next year school')}</EntryType>")
            parts.append(f"<RepeatGradeIndicator>{'true' if n % 41 == 0 else 'false'}</RepeatGradeIndicator>")
            parts.append("<SchoolChoiceTransfer>false</SchoolChoiceTransfer>")
        if e.exit_date:
            parts.append(f"<ExitWithdrawDate>{e.exit_date}</ExitWithdrawDate>")
            parts.append(f"<ExitWithdrawType>{_descriptor('ExitWithdrawType', 'Transferred')}</ExitWithdrawType>")
        if optional:
            parts.append(
                f"<ResidencyStatus>{_descriptor('ResidencyStatus', 'Resident of admin unit and school area')}</ResidencyStatus>"  # noqa: E501
            )
            parts.append("<FullTimeEquivalency>1.0000</FullTimeEquivalency>")
        parts.append("</StudentSchoolAssociation>\n")
        yield "".join(parts)


def edfi_enrollment_interchange(enrollments: Iterable[EdFiEnrollment], *, optional: bool = True) -> Iterator[str]:
    """A whole InterchangeStudentEnrollment document, piece by piece."""
    return _interchange("StudentEnrollment", edfi_enrollment_records(enrollments, optional=optional))


def write_edfi_enrollment(path: Path, enrollments: Iterable[EdFiEnrollment], *, optional: bool = True) -> int:
    """Write an enrollment interchange to disk as it is generated; returns its size in bytes."""
    size = 0
    with path.open("w", encoding="utf-8") as f:
        for piece in edfi_enrollment_interchange(enrollments, optional=optional):
            f.write(piece)
            size += len(piece.encode())
    return size


def edfi_xml_files(district: District, world: World) -> dict[str, bytes]:
    """A district's Ed-Fi bulk export: organisations, calendar, students, enrollments (with the
    demographics association), attendance (absences and tardies only, as Ed-Fi feeds send them)
    and discipline, in Data Standard 5.2 shapes with the standard's optional elements."""
    rng = random.Random(f"{world.seed}/{district.id}/edfi")  # noqa: S311 - synthetic, reproducible
    start = world.start
    entry = (start - timedelta(days=60)).isoformat()
    term = school_term(world)

    def orgs() -> Iterator[str]:
        yield (
            f"\t<LocalEducationAgency><LocalEducationAgencyId>{district.id}</LocalEducationAgencyId>"
            f"<NameOfInstitution>{_x(district.name)}</NameOfInstitution>"
            f"<ShortNameOfInstitution>{_x(district.id)}</ShortNameOfInstitution>"
            f"<LocalEducationAgencyCategory>{_descriptor('LocalEducationAgencyCategory', 'Independent')}"
            "</LocalEducationAgencyCategory></LocalEducationAgency>\n"
        )
        for s in district.schools:
            yield (
                f"\t<School><SchoolId>{s.id}</SchoolId><NameOfInstitution>{_x(s.name)}</NameOfInstitution>"
                f"<GradeLevel>{_descriptor('GradeLevel', 'Ninth grade')}</GradeLevel>"
                f"<SchoolCategory>{_descriptor('SchoolCategory', 'High School')}</SchoolCategory>"
                f"<LocalEducationAgencyReference><LocalEducationAgencyIdentity><LocalEducationAgencyId>{district.id}"
                "</LocalEducationAgencyId></LocalEducationAgencyIdentity></LocalEducationAgencyReference></School>\n"
            )

    def calendar() -> Iterator[str]:
        for s in district.schools:
            yield (
                f"\t<Session><SessionName>{term.name}</SessionName><SchoolYear>{term.begin.year}-{term.begin.year + 1}"
                f"</SchoolYear><BeginDate>{term.begin}</BeginDate><EndDate>{term.end}</EndDate>"
                f"<Term>{_descriptor('Term', 'Fall Semester')}</Term>"
                f"<TotalInstructionalDays>{len(world.days)}</TotalInstructionalDays>{_school_ref(s.id)}</Session>\n"
            )
            code = f"{s.id}-main"
            identity = (
                f"<CalendarReference><CalendarIdentity><CalendarCode>{code}</CalendarCode>{_school_ref(s.id)}"
                f"<SchoolYear>{term.begin.year}-{term.begin.year + 1}</SchoolYear></CalendarIdentity></CalendarReference>"  # noqa: E501
            )
            yield (
                f"\t<Calendar><CalendarCode>{code}</CalendarCode>"
                f"<CalendarType>{_descriptor('CalendarType', 'School')}</CalendarType>{_school_ref(s.id)}"
                f"<SchoolYear>{term.begin.year}-{term.begin.year + 1}</SchoolYear></Calendar>\n"
            )
            for day in calendar_days_off(world):
                yield (
                    f"\t<CalendarDate><Date>{day}</Date><CalendarEvent>{_descriptor('CalendarEvent', 'Holiday')}"
                    f"</CalendarEvent>{identity}</CalendarDate>\n"
                )

    def students() -> Iterator[str]:
        for st in district.students:
            prefix = f"<PersonalTitlePrefix>{rng.choice(_TITLES)}</PersonalTitlePrefix>"
            preferred = (
                f"<PreferredFirstName>{_x(st.first_name[:3])}</PreferredFirstName>" if rng.random() < 0.2 else ""
            )
            yield (
                f"\t<Student><StudentUniqueId>{st.state_id}</StudentUniqueId><Name>{prefix}"
                f"<FirstName>{_x(st.first_name)}</FirstName><LastSurname>{_x(st.last_name)}</LastSurname>{preferred}"
                f"</Name><BirthData><BirthDate>{st.birth_date}</BirthDate>"
                f"<BirthSex>{_descriptor('Sex', st.sex.capitalize() if st.sex != 'unspecified' else 'Not Selected')}"
                "</BirthSex></BirthData></Student>\n"
            )

    def enrollment() -> Iterator[str]:
        rows = [EdFiEnrollment(st.state_id, st.school_id, entry, st.grade) for st in district.students]
        yield from edfi_enrollment_records(rows)
        for st in district.students:
            lep = "Limited" if st.ell else "NotLimited"
            yield (
                f"\t<StudentEducationOrganizationAssociation>{_student_ref(st.state_id)}"
                f"<EducationOrganizationReference><EducationOrganizationIdentity><EducationOrganizationId>{district.id}"
                "</EducationOrganizationId></EducationOrganizationIdentity></EducationOrganizationReference>"
                f"<HispanicLatinoEthnicity>false</HispanicLatinoEthnicity>"
                f"<LimitedEnglishProficiency>{_descriptor('LimitedEnglishProficiency', lep)}</LimitedEnglishProficiency>"  # noqa: E501
                f"<StudentIndicator><IndicatorName>Gifted</IndicatorName><Indicator>false</Indicator></StudentIndicator>"
                "</StudentEducationOrganizationAssociation>\n"
            )

    def attendance() -> Iterator[str]:
        for st in district.students:
            marks = [(d, "Excused Absence" if ex else "Unexcused Absence") for d, ex in st.absences]
            marks += [(d, "Tardy") for d in st.tardies]
            for day, category in sorted(marks):
                reason = "Absent excused" if category == "Excused Absence" else category
                yield (
                    "\t<StudentSchoolAttendanceEvent><AttendanceEvent>"
                    f"<EventDate>{day}</EventDate>"
                    f"<AttendanceEventCategory>{_descriptor('AttendanceEventCategory', category)}</AttendanceEventCategory>"  # noqa: E501
                    f"<AttendanceEventReason>{reason}</AttendanceEventReason><EventDuration>1</EventDuration>"
                    f"</AttendanceEvent>{_student_ref(st.state_id)}{_school_ref(st.school_id)}"
                    "</StudentSchoolAttendanceEvent>\n"
                )

    def discipline() -> Iterator[str]:
        for n, st in enumerate(s for s in district.students if s.suspensions):
            for day in st.suspensions:
                yield (
                    f"\t<DisciplineAction><DisciplineActionIdentifier>{n + 1}</DisciplineActionIdentifier>"
                    f"<Discipline>{_descriptor('Discipline', 'Out of School Suspension')}</Discipline>"
                    f"<DisciplineDate>{day}</DisciplineDate><DisciplineActionLength>1</DisciplineActionLength>"
                    f"<DisciplineActionLengthDifferenceReason>{_descriptor('DisciplineActionLengthDifferenceReason', 'No Difference')}"  # noqa: E501
                    f"</DisciplineActionLengthDifferenceReason>{_student_ref(st.state_id)}"
                    f"{_school_ref(st.school_id, 'ResponsibilitySchoolReference')}</DisciplineAction>\n"
                )

    parts = {
        "EducationOrganization.xml": _interchange("EducationOrganization", orgs()),
        "EducationOrgCalendar.xml": _interchange("EducationOrgCalendar", calendar()),
        "Student.xml": _interchange("Student", students()),
        "StudentEnrollment.xml": _interchange("StudentEnrollment", enrollment()),
        "StudentSchoolAttendance.xml": _interchange("StudentAttendance", attendance()),
        "StudentDiscipline.xml": _interchange("StudentDiscipline", discipline()),
    }
    return {name: "".join(body).encode() for name, body in parts.items()}


EDFI_ORDER = (
    "EducationOrganization.xml",
    "EducationOrgCalendar.xml",
    "Student.xml",
    "StudentEnrollment.xml",
    "StudentSchoolAttendance.xml",
    "StudentDiscipline.xml",
)
