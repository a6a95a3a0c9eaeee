"""Small synthetic inputs for the ingest tests (and the benchmark): built in code, never committed
as large files."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence

from homeroom.oneroster_columns import CLASSES, DEMOGRAPHICS, ENROLLMENTS, ORGS, ROLES_12, SESSIONS, USERS_12, csv_text

# Re-exported for the tests that build OneRoster files from the generator's column lists.
__all__ = ["CLASSES", "DEMOGRAPHICS", "ENROLLMENTS", "ORGS", "ROLES_12", "SESSIONS", "USERS_12", "csv_text"]

USERS_11 = [
    "sourcedId",
    "status",
    "dateLastModified",
    "enabledUser",
    "orgSourcedIds",
    "role",
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
]


def manifest(version: str = "1.1", **modes: str) -> str:
    rows = [("manifest.version", "1.0"), ("oneroster.version", version)]
    for name in ("academicSessions", "classes", "demographics", "enrollments", "orgs", "users", "roles", "courses"):
        rows.append((f"file.{name}", modes.get(name, "absent")))
    rows.append(("source.systemName", "TestSIS"))
    return csv_text(["propertyName", "value"], [{"propertyName": k, "value": v} for k, v in rows])


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def user11(
    sid: str, *, role: str = "student", orgs: str = "sch-1", status: str = "active", **kw: str
) -> dict[str, str]:
    row = {
        "sourcedId": sid,
        "status": status,
        "dateLastModified": "2024-08-01T00:00:00Z",
        "enabledUser": "true",
        "orgSourcedIds": orgs,
        "role": role,
        "username": f"u{sid}",
        "givenName": "Ada",
        "familyName": "Lovelace",
        "identifier": f"L{sid}",
        "grades": "09",
    }
    row.update(kw)
    return row


def enrollment(sid: str, user: str, *, cls: str = "cls-1", school: str = "sch-1", **kw: str) -> dict[str, str]:
    row = {
        "sourcedId": sid,
        "status": "active",
        "dateLastModified": "2024-08-01T00:00:00Z",
        "classSourcedId": cls,
        "schoolSourcedId": school,
        "userSourcedId": user,
        "role": "student",
        "primary": "false",
        "beginDate": "",
        "endDate": "",
    }
    row.update(kw)
    return row


def base_orgs() -> list[dict[str, str]]:
    return [
        {"sourcedId": "dist-1", "status": "active", "name": "Albany CSD", "type": "district", "identifier": "0100"},
        {
            "sourcedId": "sch-1",
            "status": "active",
            "name": "Hackett Middle",
            "type": "school",
            "identifier": "010100010001",
            "parentSourcedId": "dist-1",
        },
        {
            "sourcedId": "sch-2",
            "status": "active",
            "name": "Albany High",
            "type": "school",
            "identifier": "010100010002",
            "parentSourcedId": "dist-1",
        },
    ]


def base_sessions() -> list[dict[str, str]]:
    return [
        {"sourcedId": "term-1", "title": "Fall", "type": "term", "startDate": "2024-09-03", "endDate": "2025-01-24"}
    ]


def base_classes() -> list[dict[str, str]]:
    return [
        {"sourcedId": "cls-1", "title": "Math 9", "schoolSourcedId": "sch-1", "termSourcedIds": "term-1"},
        {"sourcedId": "cls-2", "title": "ELA 9", "schoolSourcedId": "sch-2", "termSourcedIds": "term-1"},
    ]


def oneroster_zip(
    users: list[dict[str, str]],
    enrollments: list[dict[str, str]],
    *,
    version: str = "1.1",
    mode: str = "bulk",
    demographics: list[dict[str, str]] | None = None,
    roles: list[dict[str, str]] | None = None,
    extra_user_columns: Sequence[str] = (),
) -> bytes:
    modes = {
        "orgs": mode,
        "academicSessions": mode,
        "classes": mode,
        "users": mode,
        "enrollments": mode,
    }
    files: dict[str, str | bytes] = {
        "orgs.csv": csv_text(ORGS, base_orgs()),
        "academicSessions.csv": csv_text(SESSIONS, base_sessions()),
        "classes.csv": csv_text(CLASSES, base_classes()),
        "users.csv": csv_text([*(USERS_11 if version == "1.1" else USERS_12), *extra_user_columns], users),
        "enrollments.csv": csv_text(ENROLLMENTS, enrollments),
    }
    if demographics is not None:
        modes["demographics"] = mode
        files["demographics.csv"] = csv_text(DEMOGRAPHICS, demographics)
    if roles is not None:
        modes["roles"] = mode
        files["roles.csv"] = csv_text(ROLES_12, roles)
    files["manifest.csv"] = manifest(version, **modes)
    return make_zip(files)


# --- large generated inputs (streamed, never held whole) ---------------------------------------


def big_oneroster_zip(path: str, students: int, enrollments_per_student: int, schools: int = 20) -> None:
    """Write a OneRoster 1.1 zip of the given size straight to disk, row by row."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(
            "manifest.csv",
            manifest("1.1", orgs="bulk", academicSessions="bulk", classes="bulk", users="bulk", enrollments="bulk"),
        )
        orgs = [{"sourcedId": "dist-1", "name": "District", "type": "district"}]
        orgs += [
            {"sourcedId": f"sch-{i}", "name": f"School {i}", "type": "school", "parentSourcedId": "dist-1"}
            for i in range(schools)
        ]
        zf.writestr("orgs.csv", csv_text(ORGS, orgs))
        zf.writestr("academicSessions.csv", csv_text(SESSIONS, base_sessions()))
        classes_per_school = 200
        with zf.open("classes.csv", "w") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow(CLASSES)
            for s in range(schools):
                for c in range(classes_per_school):
                    w.writerow(
                        [
                            f"c-{s}-{c}",
                            "active",
                            "",
                            f"Class {c}",
                            "",
                            "",
                            "",
                            "scheduled",
                            "",
                            f"sch-{s}",
                            "term-1",
                            "",
                            "",
                            "",
                        ]
                    )
        with zf.open("users.csv", "w") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow(USERS_11)
            for i in range(students):
                w.writerow(
                    [
                        f"stu-{i}",
                        "active",
                        "2024-08-01T00:00:00Z",
                        "true",
                        f"sch-{i % schools}",
                        "student",
                        f"user{i}",
                        "",
                        "Given",
                        "Family",
                        "",
                        f"L{i:07d}",
                        "",
                        "",
                        "",
                        "",
                        "09",
                        "",
                    ]
                )
        with zf.open("enrollments.csv", "w") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
            w = csv.writer(out, lineterminator="\r\n")
            w.writerow(ENROLLMENTS)
            n = 0
            for i in range(students):
                s = i % schools
                for k in range(enrollments_per_student):
                    w.writerow(
                        [
                            f"e-{n}",
                            "active",
                            "2024-08-01T00:00:00Z",
                            f"c-{s}-{(i + k) % classes_per_school}",
                            f"sch-{s}",
                            f"stu-{i}",
                            "student",
                            "false",
                            "2024-09-03",
                            "",
                        ]
                    )
                    n += 1


def xml_attendance_lines(n: int, namespace: str = "http://ed-fi.org/0220") -> Iterator[bytes]:
    """An InterchangeStudentAttendance document of n events, produced piece by piece."""
    yield f'<?xml version="1.0" encoding="UTF-8"?>\n<InterchangeStudentAttendance xmlns="{namespace}">\n'.encode()
    batch: list[bytes] = []
    for i in range(n):
        if len(batch) >= 64:
            yield b"".join(batch)
            batch.clear()
        batch.append(
            "<StudentSchoolAttendanceEvent>"
            "<StudentReference><StudentIdentity>"
            f"<StudentUniqueId>S{i % 5000:06d}</StudentUniqueId>"
            "</StudentIdentity></StudentReference>"
            "<SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>"
            f"<EventDate>2024-{9 + (i // 5000) % 3:02d}-{1 + (i // 5000) % 28:02d}</EventDate>"
            "<AttendanceEventCategory>Unexcused Absence</AttendanceEventCategory>"
            "</StudentSchoolAttendanceEvent>\n".encode()
        )
    yield b"".join(batch)
    yield b"</InterchangeStudentAttendance>\n"


class IterStream(io.RawIOBase):
    """A read-only, non-seekable binary stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
