"""OneRoster 1.2 rostering REST for vendors (`/ims/oneroster/rostering/v1p2/`): the routes.

Collections: orgs, schools, academicSessions, terms, gradingPeriods, courses, classes, users,
students, teachers, demographics, enrollments; each also by sourcedId;
and the nested ones a vendor's import walks (`schools/{id}/classes|courses|terms|students|
teachers|enrollments`, `classes/{id}/students|teachers`, `courses/{id}/classes`,
`terms/{id}/classes|gradingPeriods`, `students|teachers|users/{id}/classes`).

Every list takes `filter`, `sort`, `orderBy`, `fields`, `limit` (1-1000, default 100) and
`offset`, and answers `X-Total-Count` and an RFC 8288 `Link` header (first, prev, next, last).
Everything is cut to the caller's agreement by `application.rostering` (the use cases; these
routes only adapt HTTP): filters and sorts only on fields the agreement releases, every student
through consent's decision, every student or teacher released a disclosure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from homeroom.auth import Principal, Role, require_roles
from homeroom.problems import FieldError, Problem
from homeroom.service import Runtime, RuntimeDep
from homeroom.storage import BIGINT_MAX
from services.records import store
from services.records.api import not_found, security_log, today
from services.records.application import roster_export
from services.records.application import rostering as uc
from services.records.application.rostering import VendorView
from services.records.roster import (
    CLASS_FIELDS,
    CLASS_SELECTABLE,
    COURSE_FIELDS,
    COURSE_SELECTABLE,
    DEMOGRAPHICS_SELECTABLE,
    ENROLLMENT_SELECTABLE,
    MAX_LIMIT,
    PREFIX,
    SESSION_FIELDS,
    SESSION_SELECTABLE,
    TEACHER_FIELDS,
    USER_SELECTABLE,
    ListQuery,
    Page,
    Predicate,
    link_header,
    page,
    stamp,
    when,
)

router = APIRouter(prefix=PREFIX, tags=["oneroster"], dependencies=[Depends(security_log)])
Vendor = Annotated[Principal, Depends(require_roles(Role.VENDOR))]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# offset + limit reaches PostgreSQL as a bigint: past it the driver would overflow (a 500).
Offset = Annotated[int, Query(ge=0, le=BIGINT_MAX - MAX_LIMIT)]

ORG_FIELDS: dict[str, str | None] = {
    f: None for f in ("sourcedId", "status", "dateLastModified", "name", "type", "identifier", "parent.sourcedId")
}
ORG_SELECTABLE = (
    "sourcedId",
    "status",
    "dateLastModified",
    "metadata",
    "name",
    "type",
    "identifier",
    "parent",
    "children",
)
STUDENT_FIELDS: dict[str, str | None] = {"sourcedId": None, "status": None, "dateLastModified": None}
USER_FIELDS: dict[str, str | None] = {**STUDENT_FIELDS, "role": None}
# The enrollment fields a vendor may filter on, and the element each one shows: filtering on a
# field the agreement withholds would answer differently by its hidden value (bisecting a
# blanked beginDate took 13 requests), so that is a 400 naming the field.
SCHOOL_ENROLLMENT_FIELDS: dict[str, str | None] = {
    "sourcedId": None,
    "status": None,
    "dateLastModified": None,
    "role": None,
    "primary": None,
    "user.sourcedId": None,
    "school.sourcedId": "enrollment.school_id",
    "beginDate": "enrollment.entry_date",
    "endDate": "enrollment.exit_date",
}
CLASS_ENROLLMENT_FIELDS: dict[str, str | None] = {
    "sourcedId": None,
    "status": None,
    "dateLastModified": None,
    "role": None,
    "primary": None,
    "user.sourcedId": None,
    "class.sourcedId": None,
    "school.sourcedId": None,
    "beginDate": "enrollment.entry_date",
    "endDate": "enrollment.exit_date",
}


@dataclass(frozen=True, slots=True)
class ListParams:
    filter: str | None
    sort: str | None
    orderBy: str | None
    fields: str | None
    limit: int
    offset: int

    def query(self, known: dict[str, str | None], view: VendorView, selectable: Sequence[str]) -> ListQuery:
        return ListQuery.parse(
            filter=self.filter,
            sort=self.sort,
            order_by=self.orderBy,
            fields=self.fields,
            limit=self.limit,
            offset=self.offset,
            known=known,
            visible=view.visible,
            selectable=selectable,
        )


def list_params(
    filter: str | None = None,
    sort: str | None = None,
    orderBy: str | None = None,
    fields: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> ListParams:
    return ListParams(filter, sort, orderBy, fields, limit, offset)


Params = Annotated[ListParams, Depends(list_params)]


def answer(request: Request, response: Response, name: str, result: Page, q: ListQuery) -> dict[str, Any]:
    response.headers["X-Total-Count"] = str(result.total)
    response.headers["Link"] = link_header(
        request.url.path, dict(request.query_params), result.total, q.limit, q.offset
    )
    return {name: [q.select(o) for o in result.items]}


def one(name: str, items: Sequence[dict[str, Any]], sourced_id: str, what: str) -> dict[str, Any]:
    for item in items:
        if item["sourcedId"] == sourced_id:
            return {name: item}
    raise not_found(what)


async def view_of(runtime: Runtime, principal: Principal) -> VendorView:
    return await uc.vendor_view(runtime, principal)


# --- orgs and schools (no student data) ---------------------------------------------------


@router.get("/orgs")
async def list_orgs(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(ORG_FIELDS, view, ORG_SELECTABLE)
    return answer(request, response, "orgs", page(await uc.orgs(runtime, view), q), q)


@router.get("/orgs/{sourced_id}")
async def get_org(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return one("org", await uc.orgs(runtime, view), sourced_id, "org")


async def _schools(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    return [o for o in await uc.orgs(runtime, view) if o["type"] == "school"]


@router.get("/schools")
async def list_schools(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(ORG_FIELDS, view, ORG_SELECTABLE)
    return answer(request, response, "orgs", page(await _schools(runtime, view), q), q)


@router.get("/schools/{sourced_id}")
async def get_school(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return one("org", await _schools(runtime, view), sourced_id, "school")


async def _school(runtime: Runtime, view: VendorView, sourced_id: str) -> None:
    if not any(s["sourcedId"] == sourced_id for s in await _schools(runtime, view)):
        raise not_found("school")


# --- academic sessions ----------------------------------------------------------------------


async def _sessions(runtime: Runtime, view: VendorView, kind: str | None = None) -> list[dict[str, Any]]:
    found = await uc.sessions(runtime, view)
    if kind == "term":  # OneRoster's terms: terms and semesters
        return [s for s in found if s["type"] in ("term", "semester")]
    return [s for s in found if s["type"] == kind] if kind else found


def _sessions_route(path: str, kind: str | None, what: str) -> None:
    async def list_route(
        principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
    ) -> dict[str, Any]:
        view = await view_of(runtime, principal)
        q = params.query(SESSION_FIELDS, view, SESSION_SELECTABLE)
        return answer(request, response, "academicSessions", page(await _sessions(runtime, view, kind), q), q)

    async def get_route(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
        view = await view_of(runtime, principal)
        return one("academicSession", await _sessions(runtime, view, kind), sourced_id, what)

    router.add_api_route(path, list_route, methods=["GET"], name=f"list_{path.strip('/')}")
    router.add_api_route(path + "/{sourced_id}", get_route, methods=["GET"], name=f"get_{path.strip('/')}")


_sessions_route("/academicSessions", None, "academic session")
_sessions_route("/terms", "term", "term")
_sessions_route("/gradingPeriods", "gradingPeriod", "grading period")


@router.get("/schools/{sourced_id}/terms")
async def school_terms(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    await _school(runtime, view, sourced_id)
    q = params.query(SESSION_FIELDS, view, SESSION_SELECTABLE)
    used = {
        t["sourcedId"]
        for c in await uc.classes(runtime, view)
        if c["school"]["sourcedId"] == sourced_id
        for t in c["terms"]
    }
    terms = [s for s in await _sessions(runtime, view, "term") if s["sourcedId"] in used]
    return answer(request, response, "academicSessions", page(terms, q), q)


@router.get("/terms/{sourced_id}/gradingPeriods")
async def term_grading_periods(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    one("academicSession", await _sessions(runtime, view, "term"), sourced_id, "term")
    q = params.query(SESSION_FIELDS, view, SESSION_SELECTABLE)
    periods = [
        s for s in await _sessions(runtime, view, "gradingPeriod") if (s["parent"] or {}).get("sourcedId") == sourced_id
    ]
    return answer(request, response, "academicSessions", page(periods, q), q)


# --- courses and classes ----------------------------------------------------------------------


@router.get("/courses")
async def list_courses(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(COURSE_FIELDS, view, COURSE_SELECTABLE)
    return answer(request, response, "courses", page(await uc.courses(runtime, view), q), q)


@router.get("/courses/{sourced_id}")
async def get_course(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return one("course", await uc.courses(runtime, view), sourced_id, "course")


@router.get("/schools/{sourced_id}/courses")
async def school_courses(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    await _school(runtime, view, sourced_id)
    q = params.query(COURSE_FIELDS, view, COURSE_SELECTABLE)
    offered = {
        c["course"]["sourcedId"]
        for c in await uc.classes(runtime, view)
        if c["course"] and c["school"]["sourcedId"] == sourced_id
    }
    found = [
        c for c in await uc.courses(runtime, view) if c["org"]["sourcedId"] == sourced_id or c["sourcedId"] in offered
    ]
    return answer(request, response, "courses", page(found, q), q)


@router.get("/classes")
async def list_classes(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(CLASS_FIELDS, view, CLASS_SELECTABLE)
    return answer(request, response, "classes", page(await uc.classes(runtime, view), q), q)


@router.get("/classes/{sourced_id}")
async def get_class(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return one("class", await uc.classes(runtime, view), sourced_id, "class")


def _classes_where(path: str, parent: str, matches_parent: Callable[[dict[str, Any], str], bool], what: str) -> None:
    """`{parent}/{id}/classes` for schools, courses and terms (no personal data)."""

    async def route(
        sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
    ) -> dict[str, Any]:
        view = await view_of(runtime, principal)
        if parent == "school":
            await _school(runtime, view, sourced_id)
        elif parent == "course":
            one("course", await uc.courses(runtime, view), sourced_id, what)
        else:
            one("academicSession", await _sessions(runtime, view, "term"), sourced_id, what)
        q = params.query(CLASS_FIELDS, view, CLASS_SELECTABLE)
        found = [c for c in await uc.classes(runtime, view) if matches_parent(c, sourced_id)]
        return answer(request, response, "classes", page(found, q), q)

    router.add_api_route(path, route, methods=["GET"], name=f"{parent}_classes")


_classes_where("/schools/{sourced_id}/classes", "school", lambda c, i: c["school"]["sourcedId"] == i, "school")
_classes_where(
    "/courses/{sourced_id}/classes",
    "course",
    lambda c, i: bool(c["course"]) and c["course"]["sourcedId"] == i,
    "course",
)
_classes_where("/terms/{sourced_id}/classes", "term", lambda c, i: any(t["sourcedId"] == i for t in c["terms"]), "term")


# --- students, teachers, users, demographics -----------------------------------------------------


async def _students_page(
    runtime: Runtime,
    principal: Principal,
    view: VendorView,
    q: ListQuery,
    elements: Sequence[str] = uc.STUDENT_ELEMENTS,
    keys: set[str] | None = None,
    require: Sequence[str] = (),
) -> tuple[list[tuple[str, str]], int]:
    rows = await uc.current_students(runtime, view)
    if keys is not None:
        rows = [r for r in rows if r["sourcedId"] in keys]
    return await uc.student_page(runtime, principal, view, rows, q, elements, require)


@router.get("/students")
async def list_students(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(STUDENT_FIELDS, view, USER_SELECTABLE)
    candidates, total = await _students_page(runtime, principal, view, q)
    users = await uc.release_students(runtime, principal, view, candidates, uc.STUDENT_ELEMENTS, uc.user_builder(view))
    return answer(request, response, "users", Page(users, total), q)


async def _student(runtime: Runtime, principal: Principal, view: VendorView, sourced_id: str) -> dict[str, Any] | None:
    district = await _district_of_student(runtime, view, sourced_id)
    if district is None:
        return None
    users = await uc.release_students(
        runtime, principal, view, [(district, sourced_id)], uc.STUDENT_ELEMENTS, uc.user_builder(view)
    )
    return users[0] if users else None


async def _district_of_student(runtime: Runtime, view: VendorView, key: str) -> str | None:
    return await uc.district_of_student(runtime, view, key)


@router.get("/students/{sourced_id}")
async def get_student(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    user = await _student(runtime, principal, view, sourced_id)
    if user is None:
        raise not_found()
    return {"user": user}


@router.get("/schools/{sourced_id}/students")
async def school_students(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    await _school(runtime, view, sourced_id)
    q = params.query(STUDENT_FIELDS, view, USER_SELECTABLE)
    school_view = VendorView(replace(view.scope, schools=(sourced_id,)), view.start, view.end)
    candidates, total = await _students_page(runtime, principal, school_view, q)
    users = await uc.release_students(runtime, principal, view, candidates, uc.STUDENT_ELEMENTS, uc.user_builder(view))
    return answer(request, response, "users", Page(users, total), q)


async def _teachers(runtime: Runtime, view: VendorView, keys: set[str] | None = None) -> list[uc.Teacher]:
    return await uc.teachers(runtime, view, sorted(keys) if keys is not None else None)


async def _teacher_answer(
    runtime: Runtime, principal: Principal, view: VendorView, found: list[uc.Teacher], q: ListQuery
) -> Page:
    by_user = {id(t.user): t for t in found}
    result = page([t.user for t in found], q)
    await uc.record_teachers(runtime, principal, view, [by_user[id(u)] for u in result.items])
    return result


@router.get("/teachers")
async def list_teachers(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(TEACHER_FIELDS, view, USER_SELECTABLE)
    found = await _teachers(runtime, view)
    return answer(request, response, "users", await _teacher_answer(runtime, principal, view, found, q), q)


@router.get("/teachers/{sourced_id}")
async def get_teacher(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    found = await _teachers(runtime, view, {sourced_id})
    if not found:
        raise not_found("teacher")
    await uc.record_teachers(runtime, principal, view, found)
    return {"user": found[0].user}


@router.get("/schools/{sourced_id}/teachers")
async def school_teachers(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    await _school(runtime, view, sourced_id)
    q = params.query(TEACHER_FIELDS, view, USER_SELECTABLE)
    found = [
        t for t in await _teachers(runtime, view) if any(r["org"]["sourcedId"] == sourced_id for r in t.user["roles"])
    ]
    return answer(request, response, "users", await _teacher_answer(runtime, principal, view, found, q), q)


@router.get("/users")
async def list_users(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    """Students, then teachers (keys only until the page is cut; then each released)."""
    view = await view_of(runtime, principal)
    q = params.query(USER_FIELDS, view, USER_SELECTABLE)
    rows = [{**r, "role": "student"} for r in await uc.current_students(runtime, view)]
    rows = await uc.visible_students(runtime, principal, view, rows, uc.STUDENT_ELEMENTS)
    teacher_rows = await _teacher_rows(runtime, view)
    everything = page([*rows, *teacher_rows], q)
    students = [(r["district"], r["sourcedId"]) for r in everything.items if r["role"] == "student"]
    staff = {r["sourcedId"] for r in everything.items if r["role"] != "student"}
    released = {
        u["sourcedId"]: u
        for u in await uc.release_students(
            runtime, principal, view, students, uc.STUDENT_ELEMENTS, uc.user_builder(view)
        )
    }
    teachers = await _teachers(runtime, view, staff) if staff else []
    await uc.record_teachers(runtime, principal, view, teachers)
    released.update({t.staff_key: t.user for t in teachers})
    users = [released[r["sourcedId"]] for r in everything.items if r["sourcedId"] in released]
    return answer(request, response, "users", Page(users, everything.total), q)


async def _teacher_rows(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    if not view.teachers_visible:
        return []
    out = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            staff = await store.staff_keys(conn, district)
            teaching = await uc.class_teachers(conn, view, district)
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


@router.get("/users/{sourced_id}")
async def get_user(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    user = await _student(runtime, principal, view, sourced_id)
    if user is not None:
        return {"user": user}
    found = await _teachers(runtime, view, {sourced_id})
    if not found:
        raise not_found("user")
    await uc.record_teachers(runtime, principal, view, found)
    return {"user": found[0].user}


@router.get("/demographics")
async def list_demographics(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(STUDENT_FIELDS, view, DEMOGRAPHICS_SELECTABLE)
    candidates, total = await _students_page(runtime, principal, view, q, uc.DEMOGRAPHIC_ELEMENTS)
    found = await uc.release_students(
        runtime, principal, view, candidates, uc.DEMOGRAPHIC_ELEMENTS, uc.demographics_build
    )
    return answer(request, response, "demographics", Page(found, total), q)


@router.get("/demographics/{sourced_id}")
async def get_demographics(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    district = await _district_of_student(runtime, view, sourced_id)
    found = (
        await uc.release_students(
            runtime, principal, view, [(district, sourced_id)], uc.DEMOGRAPHIC_ELEMENTS, uc.demographics_build
        )
        if district
        else []
    )
    if not found:
        raise not_found("demographics")
    return {"demographics": found[0]}


# --- class membership --------------------------------------------------------------------------


async def _class_members(
    runtime: Runtime, principal: Principal, view: VendorView, class_id: str, role: str
) -> list[str]:
    """The user keys enrolled in a visible class in a role (no release yet: keys only)."""
    one("class", await uc.classes(runtime, view), class_id, "class")
    everyone = ListQuery(limit=10_000_000)
    keys: list[str] = []
    for district in view.districts:
        async with store.district_tx(runtime.pool, district) as conn:
            rows, _ = await store.class_enrollments(
                conn,
                district,
                school_ids=view.schools,
                class_id=class_id,
                role=role,
                current_students_on=today(),
                limit=everyone.limit,
            )
        keys.extend(r["user_key"] for r in rows)
    return keys


@router.get("/classes/{sourced_id}/students")
async def class_students(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(STUDENT_FIELDS, view, USER_SELECTABLE)
    members = set(await _class_members(runtime, principal, view, sourced_id, "student"))
    elements = (*uc.STUDENT_ELEMENTS, uc.CLASS_ELEMENT)
    candidates, total = await _students_page(runtime, principal, view, q, elements, members, (uc.CLASS_ELEMENT,))
    users = await uc.release_students(
        runtime,
        principal,
        view,
        candidates,
        elements,
        uc.user_builder(view, require=uc.CLASS_ELEMENT),
    )
    return answer(request, response, "users", Page(users, total), q)


@router.get("/classes/{sourced_id}/teachers")
async def class_teachers(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    q = params.query(TEACHER_FIELDS, view, USER_SELECTABLE)
    if not view.teachers_visible:
        one("class", await uc.classes(runtime, view), sourced_id, "class")
        return answer(request, response, "users", Page([], 0), q)
    members = set(await _class_members(runtime, principal, view, sourced_id, "teacher"))
    found = await _teachers(runtime, view, members) if members else []
    return answer(request, response, "users", await _teacher_answer(runtime, principal, view, found, q), q)


async def _classes_of_user(
    runtime: Runtime,
    principal: Principal,
    view: VendorView,
    key: str,
    params: ListParams,
    request: Request,
    response: Response,
    role: str | None,
) -> dict[str, Any]:
    q = params.query(CLASS_FIELDS, view, CLASS_SELECTABLE)
    found = await uc.classes_of_user(runtime, principal, view, key, role)
    if found is None:
        raise not_found("user" if role is None else role)
    return answer(request, response, "classes", page(found, q), q)


@router.get("/students/{sourced_id}/classes")
async def student_classes(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return await _classes_of_user(runtime, principal, view, sourced_id, params, request, response, "student")


@router.get("/teachers/{sourced_id}/classes")
async def teacher_classes(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return await _classes_of_user(runtime, principal, view, sourced_id, params, request, response, "teacher")


@router.get("/users/{sourced_id}/classes")
async def user_classes(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    return await _classes_of_user(runtime, principal, view, sourced_id, params, request, response, None)


# --- enrollments -----------------------------------------------------------------------------


async def _enrollments(
    runtime: Runtime,
    principal: Principal,
    view: VendorView,
    params: ListParams,
    school_id: str | None = None,
    sourced_id: str | None = None,
) -> tuple[Page, ListQuery]:
    # Class enrollments where the agreement releases classes (students' or teachers'); else,
    # and for districts that send no classes, students' school enrollments.
    rostered = False
    if uc.CLASS_ELEMENT in view.visible or view.teachers_visible:
        async with runtime.pool.acquire() as conn:
            rostered = await store.has_classes(conn, view.districts)
    only = [Predicate("sourcedId", "=", sourced_id)] if sourced_id is not None else []
    if rostered:
        q = params.query(CLASS_ENROLLMENT_FIELDS, view, ENROLLMENT_SELECTABLE)
        q = replace(q, predicates=[*q.predicates, *only])
        return await uc.class_enrollments(runtime, principal, view, q, school_id=school_id), q
    q = params.query(SCHOOL_ENROLLMENT_FIELDS, view, ENROLLMENT_SELECTABLE)
    q = replace(q, predicates=[*q.predicates, *only])
    if school_id is not None:
        q = ListQuery(
            [*q.predicates, Predicate("school.sourcedId", "=", school_id)],
            q.sort,
            q.descending,
            q.fields,
            q.limit,
            q.offset,
        )
    return await uc.school_enrollments(runtime, principal, view, q), q


@router.get("/enrollments")
async def list_enrollments(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    """Class enrollments of students and teachers; for districts that send no class rosters,
    students' school enrollments (`class` null)."""
    view = await view_of(runtime, principal)
    result, q = await _enrollments(runtime, principal, view, params)
    return answer(request, response, "enrollments", result, q)


@router.get("/enrollments/{sourced_id}")
async def get_enrollment(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    """One enrollment by its sourcedId (the pseudonymous id the lists give): found among the
    vendor's own enrollments, so released (a disclosure) exactly as in a list."""
    view = await view_of(runtime, principal)
    params = ListParams(None, None, None, None, 1, 0)
    result, _ = await _enrollments(runtime, principal, view, params, sourced_id=sourced_id)
    if not result.items:
        raise not_found("enrollment")
    return {"enrollment": result.items[0]}


@router.get("/schools/{sourced_id}/enrollments")
async def school_enrollments(
    sourced_id: str, principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> dict[str, Any]:
    view = await view_of(runtime, principal)
    await _school(runtime, view, sourced_id)
    result, q = await _enrollments(runtime, principal, view, params, school_id=sourced_id)
    return answer(request, response, "enrollments", result, q)


# --- bulk CSV ------------------------------------------------------------------------------------


@router.get(
    "/bulk.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "a OneRoster 1.2 CSV bulk (or delta) zip"}},
)
async def bulk_zip(
    principal: Vendor,
    runtime: RuntimeDep,
    since: Annotated[str | None, Query(description="ISO 8601 date-time: a delta of what changed after it")] = None,
) -> Response:
    """The vendor's whole permitted roster as OneRoster 1.2 CSV files in a zip (Homeroom's extension
    of the REST binding): bulk, or with `since` a delta. One disclosure per student and teacher."""
    view = await view_of(runtime, principal)
    after = None
    if since:
        try:
            after = when(since)
        except ValueError:
            message = f"{since[:40]!r} is not an ISO 8601 date-time"
            raise Problem.validation([FieldError("query.since", "since.date", message)], message) from None
    body, _students = await roster_export.export(runtime, principal, view, after)
    name = "oneroster-delta.zip" if after else "oneroster-bulk.zip"
    return Response(
        body, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/homeroom/releases", tags=["oneroster"])
async def my_releases(principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    """Homeroom's extension for the vendor's own page: its agreement's terms, how many students it
    has received and when (from the read log; counts only, no release)."""
    view = await view_of(runtime, principal)
    return await uc.releases(runtime, view)
