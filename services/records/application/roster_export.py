"""A vendor's whole permitted roster as a OneRoster 1.2 CSV bulk zip (or a delta since a time).

Generated per agreement on request, from the same use cases as the REST answers (so the same
cut: districts, schools, elements, teachers only under `staff.class_assignment`). Every student
in the file is one disclosure (the union of what the file holds about them: their user row, and
their class enrollments where `enrollment.class` is released), every teacher one disclosure, and
what was sent is kept sealed under the agreement's own key (the release copy `commit_releases`
writes), so ending the agreement shreds it.

Delta (`since`): the objects changed after the time (`dateLastModified`), in files marked
`delta`; a student is in it when their record or one of their class enrollments changed.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from homeroom.oneroster_columns import CLASSES, ENROLLMENTS, ORGS, ROLES_12, SESSIONS, USERS_12, csv_text
from services.records import store
from services.records.application import rostering as uc
from services.records.roster import class_enrollment_object, when

COURSES = ["sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades",
           "orgSourcedId", "subjects", "subjectCodes"]  # fmt: skip


def _changed(obj: dict[str, Any], since: datetime | None) -> bool:
    return since is None or when(obj["dateLastModified"]) > since


def _ids(refs: Iterable[dict[str, Any]] | None) -> str:
    return ",".join(r["sourcedId"] for r in refs or ())


def _list(values: Sequence[str] | None) -> str:
    return ",".join(values or ())


async def export(read: uc.VendorRead, since: datetime | None) -> tuple[bytes, int]:
    """The zip, and how many students it released."""
    runtime, view = read.runtime, read.view
    mode = "delta" if since is not None else "bulk"
    orgs = [o for o in await uc.orgs(runtime, view) if _changed(o, since)]
    sessions = [s for s in await uc.sessions(runtime, view) if _changed(s, since)]
    courses = [c for c in await uc.courses(runtime, view) if _changed(c, since)]
    classes = [c for c in await uc.classes(runtime, view) if _changed(c, since)]
    visible_classes = {c["sourcedId"] for c in await uc.classes(runtime, view)}

    # Class enrollments of covered schools, current students only (the SQL scope of the REST answer).
    by_user: dict[tuple[str, str], list[dict[str, Any]]] = {}
    classes_released = uc.CLASS_ELEMENT in view.visible or view.teachers_visible
    if classes_released:
        for district, r in await uc.covered_enrollments(runtime, view, class_ids=view.classes):
            if r["class_id"] not in visible_classes:
                continue
            obj = class_enrollment_object(r, uc.enrollment_id(runtime, district, r))
            by_user.setdefault((district, r["user_key"]), []).append(obj)

    students = await uc.current_students(runtime, view)
    wanted = [
        (r["district"], r["sourcedId"])
        for r in students
        if _changed(r, since) or any(_changed(e, since) for e in by_user.get((r["district"], r["sourcedId"]), []))
    ]
    base = uc.user_builder(view)

    async def build(
        stored: store.StoredRecord, opened: Any, allowed: set[str]
    ) -> tuple[dict[str, Any], set[str]] | None:
        built = await base(stored, opened, allowed)
        if built is None:
            return None
        user, released = built
        mine = by_user.get((stored.district_id, stored.student_key), [])
        if uc.CLASS_ELEMENT in allowed and mine:
            user = {**user, "enrollments": [e for e in mine if _changed(e, since)]}
            released = released | {uc.CLASS_ELEMENT}
        return user, released

    users = await uc.release_students(read, wanted, (*uc.STUDENT_ELEMENTS, uc.CLASS_ELEMENT), build)
    teachers = [t for t in await uc.teachers(runtime, view) if _changed(t.user, since) or any(
        _changed(e, since) for e in by_user.get((t.district_id, t.staff_key), [])
    )]  # fmt: skip
    await uc.record_teachers(read, teachers)

    user_rows: list[dict[str, str]] = []
    role_rows: list[dict[str, str]] = []
    enrollment_rows: list[dict[str, str]] = []

    def add_user(user: dict[str, Any], enrollments: list[dict[str, Any]]) -> None:
        primary = next((r["org"]["sourcedId"] for r in user.get("roles", []) if r["roleType"] == "primary"), "")
        user_rows.append(
            {
                "sourcedId": user["sourcedId"],
                "status": user["status"],
                "dateLastModified": user["dateLastModified"],
                "enabledUser": "true" if user.get("enabledUser") else "false",
                "givenName": user.get("givenName", ""),
                "familyName": user.get("familyName", ""),
                "middleName": user.get("middleName", ""),
                "identifier": user.get("identifier", ""),
                "email": user.get("email", ""),
                "grades": _list(user.get("grades")),
                "primaryOrgSourcedId": primary,
            }
        )
        for i, role in enumerate(user.get("roles", [])):
            role_rows.append(
                {
                    "sourcedId": f"{user['sourcedId']}-r{i}",
                    "status": "active",
                    "dateLastModified": user["dateLastModified"],
                    "userSourcedId": user["sourcedId"],
                    "roleType": role["roleType"],
                    "role": role["role"],
                    "orgSourcedId": role["org"]["sourcedId"],
                }
            )
        for e in enrollments:
            enrollment_rows.append(
                {
                    "sourcedId": e["sourcedId"],
                    "status": e["status"],
                    "dateLastModified": e["dateLastModified"],
                    "classSourcedId": e["class"]["sourcedId"],
                    "schoolSourcedId": e["school"]["sourcedId"],
                    "userSourcedId": e["user"]["sourcedId"],
                    "role": e["role"],
                    "primary": "true" if e["primary"] else "false",
                    "beginDate": e["beginDate"] or "",
                    "endDate": e["endDate"] or "",
                }
            )

    for user in users:
        add_user(user, user.get("enrollments", []))
    for t in teachers:
        mine = [e for e in by_user.get((t.district_id, t.staff_key), []) if _changed(e, since)]
        add_user(t.user, mine)

    files = {
        "orgs.csv": csv_text(
            ORGS,
            [
                {"sourcedId": o["sourcedId"], "status": o["status"], "dateLastModified": o["dateLastModified"],
                 "name": o["name"], "type": o["type"], "identifier": o["identifier"] or "",
                 "parentSourcedId": (o["parent"] or {}).get("sourcedId", "")}
                for o in orgs
            ],
        ),
        "academicSessions.csv": csv_text(
            SESSIONS,
            [
                {"sourcedId": s["sourcedId"], "status": s["status"], "dateLastModified": s["dateLastModified"],
                 "title": s["title"], "type": s["type"], "startDate": s["startDate"], "endDate": s["endDate"],
                 "parentSourcedId": (s["parent"] or {}).get("sourcedId", ""), "schoolYear": s["schoolYear"]}
                for s in sessions
            ],
        ),
        "courses.csv": csv_text(
            COURSES,
            [
                {"sourcedId": c["sourcedId"], "status": c["status"], "dateLastModified": c["dateLastModified"],
                 "schoolYearSourcedId": (c["schoolYear"] or {}).get("sourcedId", ""), "title": c["title"],
                 "courseCode": c["courseCode"] or "", "grades": _list(c["grades"]),
                 "orgSourcedId": c["org"]["sourcedId"], "subjects": _list(c["subjects"])}
                for c in courses
            ],
        ),
        "classes.csv": csv_text(
            CLASSES,
            [
                {"sourcedId": c["sourcedId"], "status": c["status"], "dateLastModified": c["dateLastModified"],
                 "title": c["title"], "grades": _list(c["grades"]),
                 "courseSourcedId": (c["course"] or {}).get("sourcedId", ""), "classCode": c["classCode"] or "",
                 "classType": c["classType"], "location": c["location"] or "",
                 "schoolSourcedId": c["school"]["sourcedId"], "termSourcedIds": _ids(c["terms"]),
                 "subjects": _list(c["subjects"]), "periods": _list(c["periods"])}
                for c in classes
            ],
        ),
        "users.csv": csv_text(USERS_12, user_rows),
        "roles.csv": csv_text(ROLES_12, role_rows),
        "enrollments.csv": csv_text(ENROLLMENTS, enrollment_rows),
    }  # fmt: skip
    manifest = [("manifest.version", "1.0"), ("oneroster.version", "1.2")]
    manifest += [(f"file.{name[:-4]}", mode) for name in sorted(files)]
    manifest += [("file.demographics", "absent"), ("source.systemName", "Homeroom"), ("source.appName", "Homeroom")]
    files["manifest.csv"] = csv_text(["propertyName", "value"], [{"propertyName": k, "value": v} for k, v in manifest])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue(), len(users)
