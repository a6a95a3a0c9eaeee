"""Rostering for vendors (OneRoster 1.2 reads), cut to the vendor's agreement.

The agreement (consent's scope) decides the districts and schools, the elements and the term.
Organisations, academic sessions, courses and classes are not personal data: they are listed
for the covered districts and schools, no disclosure. Students (users, demographics, class
members, class enrollments) go through consent's decision, one batch per page, and each student
released is one disclosure (channel `oneroster`). Teachers are released only where the
agreement lists `staff.class_assignment`, with only the staff elements it lists; each teacher
released is a disclosure too (legal basis: the catalogue's for staff elements).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from homeroom.auth import Principal
from homeroom.catalogue import STAFF_LEGAL_BASIS
from homeroom.contracts.agreement_scope import AgreementScope
from homeroom.contracts.clients import PeerUnavailable, checked
from homeroom.contracts.consent import Decision, DecisionRequest
from homeroom.crypto import KeyDestroyedError
from homeroom.service import Runtime
from services.records import store
from services.records.application.disclosures import CHANNEL_ONEROSTER, Release, commit_releases, requester_json
from services.records.application.reads import consent, open_record, vendor_gate
from services.records.application.refusals import consent_unavailable, denied
from services.records.metrics import READS
from services.records.record import statements_travelling
from services.records.roster import (
    ListQuery,
    Page,
    Predicate,
    class_enrollment_object,
    class_object,
    course_object,
    demographics_object,
    matches,
    ref,
    session_object,
    sort_items,
    stamp,
    teacher_object,
    when,
)
from services.records.state import RecordsRuntime, today

# OneRoster user fields and the catalogue element each one releases.
USER_FIELDS: dict[str, str] = {
    "givenName": "student.first_name",
    "familyName": "student.last_name",
    "middleName": "student.middle_name",
    "email": "student.email",
    "identifier": "student.local_id",
}
STUDENT_ELEMENTS = (*USER_FIELDS.values(), "enrollment.grade_level", "enrollment.school_id")
DEMOGRAPHIC_ELEMENTS = ("student.birth_date", "student.sex", "student.race_ethnicity")
CLASS_ELEMENT = "enrollment.class"
CLASS_ENROLLMENT_ELEMENTS = (CLASS_ELEMENT, "enrollment.entry_date", "enrollment.exit_date")
TEACHERS_ELEMENT = "staff.class_assignment"
STAFF_POLICY = "catalogue/staff-elements"
DECISION_BATCH = 1000  # consent's batch limit


@dataclass(frozen=True, slots=True)
class VendorView:
    """The agreement as rostering applies it."""

    scope: AgreementScope
    start: date | None
    end: date | None
    on: date  # the day of the read: who is enrolled now

    @property
    def visible(self) -> set[str]:
        return set(self.scope.elements)

    @property
    def districts(self) -> list[str]:
        return sorted(self.scope.districts)

    @property
    def schools(self) -> list[str] | None:
        return list(self.scope.schools) if self.scope.schools else None

    def covers(self, school_id: str) -> bool:
        return not self.scope.schools or school_id in self.scope.schools

    @property
    def classes(self) -> list[str] | None:
        """The classes an agreement for certain classes only is for (None: every class)."""
        return sorted(self.scope.classes) if self.scope.classes else None

    def covers_class(self, class_id: str) -> bool:
        return not self.scope.classes or class_id in self.scope.classes

    @property
    def teachers_visible(self) -> bool:
        return TEACHERS_ELEMENT in self.scope.elements

    @property
    def purpose(self) -> str | None:
        """OneRoster is rostering: the purpose asked and recorded when the agreement permits it
        (else the decision records the agreement's own purposes)."""
        return "rostering" if "rostering" in self.scope.purposes else None


@dataclass(frozen=True, slots=True)
class VendorRead:
    """One vendor read: who asks, the runtime, and the agreement as rostering applies it. A route
    builds it once (`vendor_view` refuses an agreement not in force before anything is looked up)
    and every use case that decides or releases takes it whole."""

    runtime: RecordsRuntime
    principal: Principal
    view: VendorView


async def vendor_view(runtime: Runtime, principal: Principal) -> VendorView:
    start, end = await vendor_gate(runtime, principal)
    try:
        scope = await consent(runtime).scope(principal.agreement_id or "")
    except PeerUnavailable as exc:
        raise consent_unavailable(exc) from None
    if scope is None:
        raise denied("agreement_inactive", "the agreement is not known to the consent service")
    return VendorView(scope, start, end, today(runtime))


# --- organisations, sessions, courses, classes (no personal data) ----------------------


async def orgs(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        schools = await store.list_schools(conn, view.scope.districts)
    out: list[dict[str, Any]] = []
    for district in view.districts:
        children = [s for s in schools if s["district_id"] == district and view.covers(s["school_id"])]
        stamps = [s["updated_at"] for s in children]
        out.append(
            {
                "sourcedId": district,
                "status": "active",
                "dateLastModified": stamp(max(stamps)) if stamps else "1970-01-01T00:00:00.000Z",
                "name": district,
                "type": "district",
                "identifier": district,
                "parent": None,
                "children": [ref("org", s["school_id"]) for s in children],
            }
        )
        for school in children:
            out.append(
                {
                    "sourcedId": school["school_id"],
                    "status": "tobedeleted" if school["deleted"] else "active",
                    "dateLastModified": stamp(school["updated_at"]),
                    "name": school["name"],
                    "type": "school",
                    "identifier": school["nces_id"],
                    "parent": ref("org", district),
                    "children": [],
                }
            )
    return out


async def sessions(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        rows = await store.sessions(conn, view.districts)
    children: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if r["parent_id"]:
            children.setdefault((r["district_id"], r["parent_id"]), []).append(r["session_id"])
    known = {(r["district_id"], r["session_id"]) for r in rows}
    out = []
    for r in rows:
        obj = session_object(r, children.get((r["district_id"], r["session_id"]), []))
        if r["parent_id"] and (r["district_id"], r["parent_id"]) not in known:
            obj["parent"] = None  # a link must resolve
        out.append(obj)
    return out


async def courses(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        rows = await store.courses(conn, view.districts)
        years = {(r["district_id"], r["session_id"]) for r in await store.sessions(conn, view.districts)}
        # An agreement for certain classes: only those classes' courses.
        taught = (
            {(r["district_id"], r["course_id"]) for r in await store.classes(conn, view.districts)
             if view.covers_class(r["class_id"]) and view.covers(r["school_id"])}
            if view.classes
            else None
        )  # fmt: skip
    return [
        course_object(r, r["district_id"], (r["district_id"], r["school_year_id"]) in years)
        for r in rows
        if (not r["school_id"] or view.covers(r["school_id"]))
        and (taught is None or (r["district_id"], r["course_id"]) in taught)
    ]


async def classes(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        rows = await store.classes(conn, view.districts)
        course_rows = await store.courses(conn, view.districts)
        session_ids = {(r["district_id"], r["session_id"]) for r in await store.sessions(conn, view.districts)}
    visible_courses = {
        (r["district_id"], r["course_id"]) for r in course_rows if not r["school_id"] or view.covers(r["school_id"])
    }
    return [
        class_object(
            r,
            (r["district_id"], r["course_id"]) in visible_courses,
            [t for t in r["term_ids"] if (r["district_id"], t) in session_ids],
            None,
        )
        for r in rows
        if view.covers(r["school_id"]) and view.covers_class(r["class_id"])
    ]


# --- students -----------------------------------------------------------------------------


async def current_students(runtime: Runtime, view: VendorView, *, stamped: bool = True) -> list[dict[str, Any]]:
    """Every student currently enrolled at a covered school of a covered district, as the
    (district, sourcedId, dateLastModified) rows a filter and sort can work on: keys only."""
    out: list[dict[str, Any]] = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            rows = await store.list_student_keys(
                conn, district, school_ids=view.schools, current_on=view.on, class_ids=view.classes, limit=10_000_000
            )
        out.extend(
            {
                "district": district,
                "sourcedId": r["student_key"],
                "status": "active",
                "dateLastModified": stamp(r["updated_at"]) if stamped else None,
                "school": r["school_id"],
                "classes": r["class_ids"],
            }
            for r in rows
        )
    return out


async def covered_enrollments(
    runtime: Runtime,
    view: VendorView,
    *,
    class_id: str | None = None,
    class_ids: Sequence[str] | None = None,
    role: str | None = None,
    limit: int | None = None,
) -> list[tuple[str, Any]]:
    """Class enrollments in the agreement's schools, students only while enrolled there today:
    (district, row) per enrollment, keys only (nothing released yet)."""
    out: list[tuple[str, Any]] = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            rows, _ = await store.class_enrollments(
                conn,
                district,
                school_ids=view.schools,
                class_id=class_id,
                class_ids=class_ids,
                role=role,
                current_students_on=view.on,
                limit=limit,
            )
        out.extend((district, r) for r in rows)
    return out


async def hidden_students(
    read: VendorRead, rows: Sequence[dict[str, Any]], elements: Sequence[str], require: Sequence[str] = ()
) -> set[tuple[str, str]]:
    """The (district, key) of the students in `rows` a read of `elements` releases nothing to
    (or not every element of `require`), by consent's rules: what counts must leave out, so
    that X-Total-Count and Link never reveal a student the vendor may not see."""
    by_district: dict[str, list[tuple[str, str | None, Sequence[str] | None]]] = {}
    for r in rows:
        by_district.setdefault(r["district"], []).append((r["sourcedId"], r["school"], r.get("classes")))
    hidden: set[tuple[str, str]] = set()
    for district, students in by_district.items():
        try:
            withheld = await consent(read.runtime).screen(
                requester_json(read.principal), district, students, elements, require, read.view.purpose
            )
        except PeerUnavailable as exc:
            raise consent_unavailable(exc) from None
        hidden.update((district, k) for k in withheld)
    return hidden


def without(rows: Sequence[dict[str, Any]], hidden: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """`rows` less the students `hidden_students` found."""
    return [r for r in rows if (r["district"], r["sourcedId"]) not in hidden]


def first_school(view: VendorView, stored: store.StoredRecord) -> str | None:
    """The school a student's decision names: the first covered school it attends today (as
    `store.list_student_keys` gives it for the counts)."""
    return min((s for s in stored.school_ids(current_on=view.on) if view.covers(s)), default=None)


Builder = Callable[[store.StoredRecord, Any, set[str]], Awaitable[tuple[dict[str, Any], set[str]] | None]]


async def release_students(
    read: VendorRead, candidates: Sequence[tuple[str, str]], elements: Sequence[str], build: Builder
) -> list[dict[str, Any]]:
    """Load, decide (one batch per 1,000), build and record: one disclosure per student released."""
    if len(candidates) > DECISION_BATCH:
        out: list[dict[str, Any]] = []
        for i in range(0, len(candidates), DECISION_BATCH):
            chunk = candidates[i : i + DECISION_BATCH]
            out.extend(await release_students(read, chunk, elements, build))
        return out
    runtime, principal, view = read.runtime, read.principal, read.view
    by_district: dict[str, list[str]] = {}
    for district, key in candidates:
        by_district.setdefault(district, []).append(key)
    found: dict[tuple[str, str], store.StoredRecord] = {}
    in_classes: dict[tuple[str, str], list[str]] = {}
    for district, keys in by_district.items():
        async with store.district_tx(runtime.pool, district) as conn:
            for stored in await store.load_roster(conn, district, keys):
                found[(district, stored.student_key)] = stored
            if view.classes:
                mine = await store.classes_of_students(conn, district, keys, view.classes)
                in_classes.update({(district, k): c for k, c in mine.items()})
    loaded = [found[c] for c in candidates if c in found]
    decisions = await _decide(
        read,
        [
            (s.district_id, s.student_key, first_school(view, s), in_classes.get((s.district_id, s.student_key), []))
            for s in loaded
        ],
        elements,
    )
    allowed: dict[str, list[str]] = {}
    for stored, decision in zip(loaded, decisions, strict=True):
        if decision.allow:
            allowed.setdefault(stored.district_id, []).append(stored.student_key)
    for district, keys in allowed.items():  # one key read for the page, not one per student
        await runtime.require_cipher().prefetch(district, keys)
    objects: list[dict[str, Any]] = []
    releases: list[Release] = []
    for stored, decision in zip(loaded, decisions, strict=True):
        if not decision.allow:
            continue
        opened = await open_record(runtime, stored)
        built = await build(stored, opened, set(decision.elements_allowed))
        if built is None:
            continue
        obj, released = built
        objects.append(obj)
        releases.append(Release(stored.district_id, stored.student_key, sorted(released), decision, obj))
    await commit_releases(runtime, principal, releases, channel=CHANNEL_ONEROSTER, purpose=view.purpose or "")
    READS.labels(principal.role.value, CHANNEL_ONEROSTER).inc(len(objects))
    return objects


async def _decide(
    read: VendorRead, students: Sequence[tuple[str, str, str | None, Sequence[str]]], elements: Sequence[str]
) -> list[Decision]:
    """Consent's decisions; the student's classes are named only for an agreement for certain
    classes (consent then denies a student in none of them)."""
    view, requester = read.view, requester_json(read.principal)
    requests = [
        checked(
            DecisionRequest,
            action="read",
            requester=requester,
            student_key=key,
            district_id=district,
            school_id=school,
            class_ids=list(classes) if view.classes else None,
            elements=list(elements),
            purpose=view.purpose,
        )
        for district, key, school, classes in students
    ]
    try:
        return await consent(read.runtime).decide_many(requests) if requests else []
    except PeerUnavailable as exc:
        raise consent_unavailable(exc) from None


def user_builder(view: VendorView, *, require: str | None = None) -> Builder:
    """A student as a OneRoster user; with ``require``, only if that element is released too
    (a class's students need `enrollment.class`)."""

    async def build(
        stored: store.StoredRecord, opened: Any, allowed: set[str]
    ) -> tuple[dict[str, Any], set[str]] | None:
        if require is not None and require not in allowed:
            return None
        released: set[str] = {require} if require else set()
        user: dict[str, Any] = {
            "sourcedId": stored.student_key,
            "status": "active",
            "dateLastModified": stamp(stored.updated_at),
            "enabledUser": True,
            "roles": [],
            "userIds": [],
            "agents": [],
        }
        for field, element in USER_FIELDS.items():
            if element in allowed and element in opened.elements:
                user[field] = opened.elements[element]
                released.add(element)
        if "enrollment.school_id" in allowed:
            schools = sorted(s for s in stored.school_ids(current_on=view.on) if view.covers(s))
            user["roles"] = [
                {"roleType": "primary" if i == 0 else "secondary", "role": "student", "org": ref("org", s)}
                for i, s in enumerate(schools)
            ]
            if schools:
                released.add("enrollment.school_id")
        grade = opened.elements.get("enrollment.grade_level")
        user["grades"] = []
        if "enrollment.grade_level" in allowed and grade:
            user["grades"] = [grade]
            released.add("enrollment.grade_level")
        # FERPA 99.21: the parent's statement on a released element travels with it (OneRoster's
        # `metadata` extension), with the district's decision on the requested amendment.
        statements = statements_travelling(opened, released)
        if statements:
            user["metadata"] = {"homeroom.parentStatements": statements}
            released.add("record.parent_statement")
        return user, released

    return build


async def demographics_build(
    stored: store.StoredRecord, opened: Any, allowed: set[str]
) -> tuple[dict[str, Any], set[str]] | None:
    obj, held = demographics_object(stored.student_key, stored.updated_at, opened.elements, allowed)
    return (obj, held) if held else None


# --- teachers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Teacher:
    district_id: str
    staff_key: str
    user: dict[str, Any]
    elements: set[str]


async def teachers(runtime: Runtime, view: VendorView, keys: Iterable[str] | None = None) -> list[Teacher]:
    """Teachers at covered schools (none unless the agreement lists `staff.class_assignment`),
    with only the staff elements the agreement lists opened."""
    if not view.teachers_visible:
        return []
    wanted = list(keys) if keys is not None else None
    cipher = runtime.require_cipher()
    out: list[Teacher] = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            rows = await store.staff(conn, district, wanted)
            teaching = await class_teachers(conn, view, district)
        for r in rows:
            schools = sorted(s for s in r["school_ids"] if view.covers(s))
            if not schools or r["deleted"] or (teaching is not None and r["staff_key"] not in teaching):
                continue
            sealed = {e: bytes(v) for e, v in zip(r["elements"], r["sealed"], strict=True) if e in view.visible}
            try:
                raw = await cipher.open_many(district, r["staff_key"], sealed) if sealed else {}
            except KeyDestroyedError:
                continue  # the staff member's data was destroyed
            opened = {e: v.decode("utf-8") for e, v in raw.items()}
            user, held = teacher_object(r, opened, view.visible, schools)
            out.append(Teacher(district, r["staff_key"], user, held))
    return out


async def class_teachers(conn: Any, view: VendorView, district: str) -> set[str] | None:
    """For an agreement for certain classes, the staff teaching them (None: no such limit)."""
    return await store.teachers_of_classes(conn, district, view.classes) if view.classes else None


async def teacher_rows(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    """The teachers the agreement releases, keys only (nothing released yet): for `users` lists,
    paged with the students before each one on the page is released."""
    if not view.teachers_visible:
        return []
    out = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            staff = await store.staff_keys(conn, district)
            teaching = await class_teachers(conn, view, district)
            for r in staff:
                if r["deleted"] or not any(view.covers(s) for s in r["school_ids"]):
                    continue
                if teaching is not None and r["staff_key"] not in teaching:
                    continue
                out.append(
                    {
                        "district": district,
                        "sourcedId": r["staff_key"],
                        "status": "active",
                        "dateLastModified": stamp(r["updated_at"]),
                        "role": r["role"],
                    }
                )
    return out


async def record_teachers(read: VendorRead, released: Iterable[Teacher]) -> None:
    """Each teacher released is a disclosure like a student's: the staff elements, the agreement
    and the catalogue's legal basis for staff data (no per-person consent decision applies)."""
    view = read.view
    releases = []
    for t in released:
        decision = Decision(
            decision_id=str(uuid.uuid4()),
            allow=True,
            legal_basis=STAFF_LEGAL_BASIS,
            elements_allowed=sorted(t.elements),
            elements_withheld=[],
            reason="the agreement lists these staff elements",
            agreement_id=view.scope.agreement_id,
            agreement_version=view.scope.version,
            purpose=view.purpose,
            policy_version=STAFF_POLICY,
        )
        releases.append(Release(t.district_id, t.staff_key, sorted(t.elements), decision, t.user))
    await commit_releases(read.runtime, read.principal, releases, channel=CHANNEL_ONEROSTER, purpose=view.purpose or "")


# --- class enrollments --------------------------------------------------------------------

# What SQL can do for class enrollments; any other filter or a sort is applied to the whole
# (SQL-scoped) list in Python.
ENROLLMENT_DATES = {"beginDate": "enrollment.entry_date", "endDate": "enrollment.exit_date"}
SQL_FILTERS = {("class.sourcedId", "="), ("user.sourcedId", "="), ("school.sourcedId", "="), ("role", "=")}


async def class_enrollments(read: VendorRead, q: ListQuery) -> Page:
    """A page of class enrollments: students' only where their decision releases
    `enrollment.class` (and only while they are enrolled at the school), teachers' only where the
    agreement lists `staff.class_assignment`. One disclosure per student and per teacher. A
    caller narrows the page by adding `=` predicates at the end of `q` (the last on a field wins)."""
    runtime, view = read.runtime, read.view
    fields = {p.field: p.value for p in q.predicates if p.op == "="}
    class_id = fields.get("class.sourcedId")
    user_key = fields.get("user.sourcedId")
    role = fields.get("role")
    school_id = fields.get("school.sourcedId")
    if role == "teacher" and not view.teachers_visible:
        return Page([], 0)
    if not view.teachers_visible:
        role = "student" if role in (None, "student") else role
    schools = [school_id] if school_id else view.schools
    if (school_id and not view.covers(school_id)) or (class_id and not view.covers_class(class_id)):
        return Page([], 0)
    bounded = q.sort is None and not q.descending and all((p.field, p.op) in SQL_FILTERS for p in q.predicates)
    hidden: set[tuple[str, str]] = set()
    if role != "teacher":
        # Students the vendor may not see are left out of the rows and the total; a filter on
        # a date needs the date released too (never matched on a withheld value).
        dates = [e for f, e in ENROLLMENT_DATES.items() if any(p.field == f for p in q.predicates)]
        candidates = await current_students(runtime, view, stamped=False)  # for the screen: keys only
        if user_key is not None:
            candidates = [r for r in candidates if r["sourcedId"] == user_key]
        hidden = await hidden_students(read, candidates, CLASS_ENROLLMENT_ELEMENTS, (CLASS_ELEMENT, *dates))
    rows: list[tuple[str, Any]] = []
    total = 0
    # Districts in order; each district's rows from SQL (paged there when the query allows).
    skip = q.offset
    want = q.limit
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            found, count = await store.class_enrollments(
                conn,
                district,
                school_ids=schools,
                class_id=class_id,
                class_ids=view.classes,
                user_key=user_key,
                role=role,
                current_students_on=view.on,
                hidden_students=[k for d, k in hidden if d == district],
                limit=want if bounded else None,
                offset=skip if bounded else 0,
            )
        total += count
        if bounded:
            rows.extend((district, r) for r in found)
            skip = max(0, skip - count)
            want = max(0, q.limit - len(rows))
        else:
            rows.extend((district, r) for r in found)
    objects = [(d, class_enrollment_object(r, enrollment_id(runtime, d, r)), r) for d, r in rows]
    if not bounded:
        kept = [o for o in objects if matches(o[1], q.predicates)]
        ordered_objs = sort_items([o[1] for o in kept], q)
        order = {id(o): i for i, o in enumerate(ordered_objs)}
        kept.sort(key=lambda o: order[id(o[1])])
        total = len(kept)
        objects = kept[q.offset : q.offset + q.limit]
    return Page(await _release_enrollments(read, objects), total)


def enrollment_id(runtime: Runtime, district: str, row: Any) -> str:
    return runtime.pseudonymizer.enrollment_id(district, row["user_key"], "class:" + row["class_id"], row["role"])


async def _release_enrollments(
    read: VendorRead, objects: Sequence[tuple[str, dict[str, Any], Any]]
) -> list[dict[str, Any]]:
    students = sorted({(d, r["user_key"], r["school_id"]) for d, _, r in objects if r["role"] == "student"})
    firsts: dict[tuple[str, str], str] = {}
    for d, k, s in students:
        firsts.setdefault((d, k), s)
    # the page's rows are already cut to the agreement's classes: those are the student's classes
    in_classes: dict[tuple[str, str], set[str]] = {}
    for d, _, r in objects:
        in_classes.setdefault((d, r["user_key"]), set()).add(r["class_id"])
    keys = sorted(firsts)
    decisions = dict(
        zip(
            keys,
            await _decide(
                read, [(d, k, firsts[(d, k)], sorted(in_classes[(d, k)])) for d, k in keys], CLASS_ENROLLMENT_ELEMENTS
            ),
            strict=True,
        )
    )
    teacher_keys = {(d, r["user_key"]) for d, _, r in objects if r["role"] == "teacher"}
    out: list[dict[str, Any]] = []
    student_releases: dict[tuple[str, str], list[dict[str, Any]]] = {}
    teacher_released: dict[tuple[str, str], list[dict[str, Any]]] = {}
    released_parts: dict[tuple[str, str], set[str]] = {}
    for d, obj, r in objects:
        key = (d, r["user_key"])
        if r["role"] == "student":
            decision = decisions.get(key)
            if decision is None or CLASS_ELEMENT not in decision.elements_allowed:
                continue
            # the dates only where the student's decision releases them, like school enrollments
            obj = dict(obj)
            parts = {CLASS_ELEMENT}
            for field, element in (("beginDate", "enrollment.entry_date"), ("endDate", "enrollment.exit_date")):
                if element in decision.elements_allowed and obj[field] is not None:
                    parts.add(element)
                else:
                    obj[field] = None
            released_parts.setdefault(key, set()).update(parts)
            student_releases.setdefault(key, []).append(obj)
        elif key in teacher_keys and read.view.teachers_visible:
            teacher_released.setdefault(key, []).append(obj)
        else:
            continue
        out.append(obj)
    releases = [
        Release(d, k, sorted(released_parts[(d, k)]), decisions[(d, k)], objs)
        for (d, k), objs in sorted(student_releases.items())
    ]
    await commit_releases(
        read.runtime, read.principal, releases, channel=CHANNEL_ONEROSTER, purpose=read.view.purpose or ""
    )
    await record_teachers(
        read,
        [Teacher(d, k, {"enrollments": objs}, {TEACHERS_ELEMENT}) for (d, k), objs in sorted(teacher_released.items())],
    )
    READS.labels(read.principal.role.value, CHANNEL_ONEROSTER).inc(len(releases) + len(teacher_released))
    return out


async def student_page(
    read: VendorRead, rows: list[dict[str, Any]], q: ListQuery, elements: Sequence[str], require: Sequence[str] = ()
) -> tuple[list[tuple[str, str]], int]:
    """Filter, screen, sort and cut the students' key rows: the page's (district, key) and the
    total of those the vendor may see (a read of `elements` releases something to them)."""
    found = [r for r in rows if matches(r, q.predicates)]
    found = without(found, await hidden_students(read, found, elements, require))
    ordered = sort_items(found, q)
    return [(r["district"], r["sourcedId"]) for r in ordered[q.offset : q.offset + q.limit]], len(ordered)


# --- school enrollments (districts that send no class rosters) -----------------------------

SCHOOL_ENROLLMENT_ELEMENTS = ("enrollment.school_id", "enrollment.entry_date", "enrollment.exit_date")


async def school_enrollments(read: VendorRead, q: ListQuery) -> Page:
    """Students' school enrollments (`class` null), for agreements whose districts send no
    classes: what SQL can do (covered schools, the agreement's end, the common predicates) is
    done there; with no other predicate the page bounds the query too. An agreement for certain
    classes has none here (these districts send no classes)."""
    runtime, view = read.runtime, read.view
    if view.classes:
        return Page([], 0)
    predicates = q.predicates
    sql_fields = {
        ("dateLastModified", ">"),
        ("dateLastModified", ">="),
        ("user.sourcedId", "="),
        ("school.sourcedId", "="),
    }
    updated_after = next(
        (when(p.value) for p in predicates if p.field == "dateLastModified" and p.op in (">", ">=")), None
    )
    user = next((p.value for p in predicates if p.field == "user.sourcedId" and p.op == "="), None)
    school_id = next((p.value for p in predicates if p.field == "school.sourcedId" and p.op == "="), None)
    bounded = q.sort is None and not q.descending and all((p.field, p.op) in sql_fields for p in predicates)
    only = store.EnrollmentFilter(
        school_ids=view.schools,
        updated_after=updated_after - timedelta(microseconds=1) if updated_after else None,
        student_key=user,
        school_id=school_id,
        entry_on_or_before=view.end,
        limit=q.offset + q.limit if bounded else None,
    )
    rows: list[tuple[str, dict[str, Any]]] = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            found = await store.list_enrollments(conn, district, only)
        for e in found:
            obj = {
                "sourcedId": runtime.pseudonymizer.enrollment_id(
                    district, e["student_key"], e["school_id"], e["entry_date"].isoformat()
                ),
                "status": "active",
                "dateLastModified": stamp(e["updated_at"]),
                "role": "student",
                "primary": True,
                "user": ref("user", e["student_key"]),
                "class": None,
                "school": ref("org", e["school_id"]),
                "beginDate": e["entry_date"].isoformat(),
                "endDate": e["exit_date"].isoformat() if e["exit_date"] else None,
            }
            if matches(obj, predicates):
                rows.append((district, obj))
    # Students the vendor may not see are left out of the total too (and a date filter needs the
    # date released: never matched on a withheld value).
    dates = [e for f, e in ENROLLMENT_DATES.items() if any(p.field == f for p in predicates)]
    seen = {(d, o["user"]["sourcedId"]): o["school"]["sourcedId"] for d, o in reversed(rows)}
    hidden = await hidden_students(
        read,
        [{"district": d, "sourcedId": k, "school": sch} for (d, k), sch in seen.items()],
        SCHOOL_ENROLLMENT_ELEMENTS,
        ("enrollment.school_id", *dates),
    )
    rows = [(d, o) for d, o in rows if (d, o["user"]["sourcedId"]) not in hidden]
    ordered = sort_items([o for _, o in rows], q)
    district_of = {id(o): d for d, o in rows}
    total = len(ordered)
    page = [(district_of[id(o)], o) for o in ordered[q.offset : q.offset + q.limit]]
    school_of: dict[tuple[str, str], str] = {}
    for district, obj in page:
        key = (district, obj["user"]["sourcedId"])
        school_of[key] = min(school_of.get(key, obj["school"]["sourcedId"]), obj["school"]["sourcedId"])
    students = sorted(school_of)
    decisions = await _decide(read, [(d, k, school_of[(d, k)], []) for d, k in students], SCHOOL_ENROLLMENT_ELEMENTS)
    by_student = dict(zip(students, decisions, strict=True))
    out: list[dict[str, Any]] = []
    released: dict[tuple[str, str], set[str]] = {}
    for district, obj in page:
        decision = by_student[(district, obj["user"]["sourcedId"])]
        allowed = set(decision.elements_allowed) if decision.allow else set()
        if "enrollment.school_id" not in allowed:
            continue
        item = dict(obj)
        parts = {"enrollment.school_id"}
        if "enrollment.entry_date" in allowed:
            parts.add("enrollment.entry_date")
        else:
            item["beginDate"] = None
        if "enrollment.exit_date" in allowed and item["endDate"] is not None:
            parts.add("enrollment.exit_date")
        else:
            item["endDate"] = None
        if not matches(item, predicates):
            # A student whose own decision withholds a filtered field (a parent's opt-out)
            # is matched on what is released, never on the hidden value.
            continue
        out.append(item)
        released.setdefault((district, obj["user"]["sourcedId"]), set()).update(parts)
    releases = [
        Release(d, k, sorted(els), by_student[(d, k)], [o for o in out if o["user"]["sourcedId"] == k])
        for (d, k), els in sorted(released.items())
    ]
    await commit_releases(runtime, read.principal, releases, channel=CHANNEL_ONEROSTER, purpose=view.purpose or "")
    READS.labels(read.principal.role.value, CHANNEL_ONEROSTER).inc(len(releases))
    return Page(out, total)


# --- what the vendor has received -----------------------------------------------------------


async def releases(runtime: Runtime, view: VendorView) -> dict[str, Any]:
    """How many students (and staff) the vendor received under its agreement, and when: the
    vendor's page in the portal. Counts from the read log (each row a disclosure); no release."""
    agreement = view.scope.agreement_id
    days: dict[str, dict[str, Any]] = {}
    students = 0
    for district in sorted(set(view.scope.covered_districts or view.scope.districts)):
        async with store.district_tx(runtime.pool, district) as conn:
            students += await store.students_released(conn, district, agreement)
            for r in await store.releases_by_day(conn, district, agreement):
                day = days.setdefault(
                    r["day"].isoformat(), {"date": r["day"].isoformat(), "students": 0, "staff": 0, "disclosures": 0}
                )
                day["students"] += r["students"]
                day["staff"] += r["staff"]
                day["disclosures"] += r["disclosures"]
                day["last"] = max(day.get("last", ""), stamp(r["last"]))
    ordered = [days[d] for d in sorted(days)]
    return {
        "agreement_id": agreement,
        "organization": view.scope.organization,
        "elements": sorted(view.scope.elements),
        "purposes": sorted(view.scope.purposes),
        "districts": sorted(view.scope.districts),
        "schools": sorted(view.scope.schools),
        "start_date": view.scope.start_date,
        "end_date": view.scope.end_date,
        "students_received": students,
        "disclosures": sum(d["disclosures"] for d in ordered),
        "last_release": ordered[-1]["last"] if ordered else None,
        "by_day": ordered,
    }


async def district_of_student(runtime: Runtime, view: VendorView, key: str) -> str | None:
    """The covered district where the student is enrolled at a covered school today, if any."""
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            rows = await store.list_student_keys(
                conn,
                district,
                school_ids=view.schools,
                current_on=view.on,
                student_key=key,
                class_ids=view.classes,
                limit=1,
            )
        if rows:
            return district
    return None


async def classes_of_user(read: VendorRead, key: str, role: str | None) -> list[dict[str, Any]] | None:
    """The classes a visible student (whose decision releases `enrollment.class`) or teacher is
    enrolled in; the membership is released (a disclosure). None: no such user visible (a student
    whose class membership is withheld answers like one not visible at all)."""

    def every_class(as_role: str) -> ListQuery:
        return ListQuery([Predicate("user.sourcedId", "=", key), Predicate("role", "=", as_role)], limit=1000)

    runtime, view = read.runtime, read.view
    if role != "teacher" and await district_of_student(runtime, view, key) is not None:
        membership = await class_enrollments(read, every_class("student"))
        if membership.items:
            ids = {e["class"]["sourcedId"] for e in membership.items}
            return [c for c in await classes(runtime, view) if c["sourcedId"] in ids]
        if role == "student":
            return None
    if role != "student" and await teachers(runtime, view, [key]):
        membership = await class_enrollments(read, every_class("teacher"))
        ids = {e["class"]["sourcedId"] for e in membership.items}
        return [c for c in await classes(runtime, view) if c["sourcedId"] in ids]
    return None
