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

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from homeroom.auth import Principal, Role, require_roles
from homeroom.problems import FieldError, Problem
from homeroom.service import Runtime
from homeroom.storage import BIGINT_MAX
from services.records import store
from services.records.application import roster_export
from services.records.application import rostering as uc
from services.records.application.refusals import not_found
from services.records.application.rostering import VendorRead, VendorView
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
    when,
)
from services.records.security_log import security_log
from services.records.state import RuntimeDep

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
_ENROLLMENT_FIELDS: dict[str, str | None] = {**USER_FIELDS, "primary": None, "user.sourcedId": None}
_DATE_FIELDS: dict[str, str | None] = {"beginDate": "enrollment.entry_date", "endDate": "enrollment.exit_date"}
SCHOOL_ENROLLMENT_FIELDS = {**_ENROLLMENT_FIELDS, "school.sourcedId": "enrollment.school_id", **_DATE_FIELDS}
CLASS_ENROLLMENT_FIELDS = {**_ENROLLMENT_FIELDS, "class.sourcedId": None, "school.sourcedId": None, **_DATE_FIELDS}


@dataclass(frozen=True, slots=True)
class ListParams:
    """A list's query parameters as sent (`orderBy` as `order_by`), parsed by `ListQuery.parse`."""

    filter: str | None
    sort: str | None
    order_by: str | None
    fields: str | None
    limit: int
    offset: int

    def query(self, known: dict[str, str | None], view: VendorView, selectable: Sequence[str]) -> ListQuery:
        return ListQuery.parse(**asdict(self), known=known, visible=view.visible, selectable=selectable)


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


def one(name: str, items: Sequence[dict[str, Any]], sourced_id: str, what: str) -> dict[str, Any]:
    for item in items:
        if item["sourcedId"] == sourced_id:
            return {name: item}
    raise not_found(what)


Fetch = Callable[[Runtime, VendorView], Awaitable[list[dict[str, Any]]]]


def _collection(
    path: str,
    names: tuple[str, str],
    fields: tuple[dict[str, str | None], Sequence[str]],
    fetch: Fetch,
    what: str,
    route_names: tuple[str, str] | None = None,
) -> None:
    """A collection that is not personal data (orgs, schools, sessions, courses, classes): the list
    (`GET path`, `names[0]`) and one by sourcedId (`GET path/{sourced_id}`, `names[1]`)."""
    known, selectable = fields
    list_name, get_name = route_names or (f"list_{path.strip('/')}", f"get_{path.strip('/')}")

    async def list_route(vendor: Lister) -> dict[str, Any]:
        q = vendor.query(known, selectable)
        return vendor.answer(names[0], page(await fetch(vendor.runtime, vendor.view), q), q)

    async def get_route(sourced_id: str, vendor: Reader) -> dict[str, Any]:
        return one(names[1], await fetch(vendor.runtime, vendor.view), sourced_id, what)

    router.add_api_route(path, list_route, methods=["GET"], name=list_name)
    router.add_api_route(path + "/{sourced_id}", get_route, methods=["GET"], name=get_name)


@dataclass(frozen=True, slots=True)
class VendorList(VendorRead):
    """A vendor's list read: its parameters, and the answer's paging headers."""

    params: ListParams
    request: Request
    response: Response

    def query(self, known: dict[str, str | None], selectable: Sequence[str]) -> ListQuery:
        return self.params.query(known, self.view, selectable)

    def answer(self, name: str, result: Page, q: ListQuery) -> dict[str, Any]:
        """The page's objects cut to `fields`, with `X-Total-Count` and the RFC 8288 `Link` header."""
        self.response.headers["X-Total-Count"] = str(result.total)
        self.response.headers["Link"] = link_header(
            self.request.url.path, dict(self.request.query_params), result.total, q.limit, q.offset
        )
        return {name: [q.select(o) for o in result.items]}


# Each route's read is built once, here: the agreement is looked up (and one not in force refused)
# after FastAPI has validated the list's parameters, before the route looks anything up.
async def vendor_read(principal: Vendor, runtime: RuntimeDep) -> VendorRead:
    return VendorRead(runtime, principal, await uc.vendor_view(runtime, principal))


async def vendor_list(
    principal: Vendor, runtime: RuntimeDep, params: Params, request: Request, response: Response
) -> VendorList:
    return VendorList(runtime, principal, await uc.vendor_view(runtime, principal), params, request, response)


Reader = Annotated[VendorRead, Depends(vendor_read)]
Lister = Annotated[VendorList, Depends(vendor_list)]


# --- orgs and schools (no student data) ---------------------------------------------------


async def _schools(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
    return [o for o in await uc.orgs(runtime, view) if o["type"] == "school"]


ORGS = (ORG_FIELDS, ORG_SELECTABLE)
_collection("/orgs", ("orgs", "org"), ORGS, uc.orgs, "org", ("list_orgs", "get_org"))
_collection("/schools", ("orgs", "org"), ORGS, _schools, "school", ("list_schools", "get_school"))


async def _school(vendor: VendorRead, sourced_id: str) -> None:
    if not any(s["sourcedId"] == sourced_id for s in await _schools(vendor.runtime, vendor.view)):
        raise not_found("school")


# --- academic sessions ----------------------------------------------------------------------

SESSIONS = (SESSION_FIELDS, SESSION_SELECTABLE)


async def _sessions(runtime: Runtime, view: VendorView, kind: str | None = None) -> list[dict[str, Any]]:
    found = await uc.sessions(runtime, view)
    if kind == "term":  # OneRoster's terms: terms and semesters
        return [s for s in found if s["type"] in ("term", "semester")]
    return [s for s in found if s["type"] == kind] if kind else found


def _sessions_of(kind: str | None) -> Fetch:
    async def fetch(runtime: Runtime, view: VendorView) -> list[dict[str, Any]]:
        return await _sessions(runtime, view, kind)

    return fetch


_collection(
    "/academicSessions", ("academicSessions", "academicSession"), SESSIONS, _sessions_of(None), "academic session"
)
_collection("/terms", ("academicSessions", "academicSession"), SESSIONS, _sessions_of("term"), "term")
_collection(
    "/gradingPeriods",
    ("academicSessions", "academicSession"),
    SESSIONS,
    _sessions_of("gradingPeriod"),
    "grading period",
)


async def _school_classes(
    vendor: VendorList, sourced_id: str, fields: tuple[dict[str, str | None], Sequence[str]]
) -> tuple[ListQuery, list[dict[str, Any]]]:
    """For a `/schools/{id}/...` list: the list query over `fields` (known, selectable) and the
    classes of that school the vendor sees; 404 if it sees no such school."""
    await _school(vendor, sourced_id)
    known, selectable = fields
    q = vendor.query(known, selectable)
    classes = [c for c in await uc.classes(vendor.runtime, vendor.view) if c["school"]["sourcedId"] == sourced_id]
    return q, classes


@router.get("/schools/{sourced_id}/terms")
async def school_terms(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    q, classes = await _school_classes(vendor, sourced_id, SESSIONS)
    used = {t["sourcedId"] for c in classes for t in c["terms"]}
    terms = [s for s in await _sessions(vendor.runtime, vendor.view, "term") if s["sourcedId"] in used]
    return vendor.answer("academicSessions", page(terms, q), q)


@router.get("/terms/{sourced_id}/gradingPeriods")
async def term_grading_periods(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    runtime, view = vendor.runtime, vendor.view
    one("academicSession", await _sessions(runtime, view, "term"), sourced_id, "term")
    q = vendor.query(SESSION_FIELDS, SESSION_SELECTABLE)
    periods = [
        s for s in await _sessions(runtime, view, "gradingPeriod") if (s["parent"] or {}).get("sourcedId") == sourced_id
    ]
    return vendor.answer("academicSessions", page(periods, q), q)


# --- courses and classes ----------------------------------------------------------------------

_collection(
    "/courses",
    ("courses", "course"),
    (COURSE_FIELDS, COURSE_SELECTABLE),
    uc.courses,
    "course",
    ("list_courses", "get_course"),
)
_collection(
    "/classes",
    ("classes", "class"),
    (CLASS_FIELDS, CLASS_SELECTABLE),
    uc.classes,
    "class",
    ("list_classes", "get_class"),
)


@router.get("/schools/{sourced_id}/courses")
async def school_courses(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    q, classes = await _school_classes(vendor, sourced_id, (COURSE_FIELDS, COURSE_SELECTABLE))
    offered = {c["course"]["sourcedId"] for c in classes if c["course"]}
    found = [
        c
        for c in await uc.courses(vendor.runtime, vendor.view)
        if c["org"]["sourcedId"] == sourced_id or c["sourcedId"] in offered
    ]
    return vendor.answer("courses", page(found, q), q)


def _classes_where(path: str, parent: str, matches_parent: Callable[[dict[str, Any], str], bool], what: str) -> None:
    """`{parent}/{id}/classes` for schools, courses and terms (no personal data)."""

    async def route(sourced_id: str, vendor: Lister) -> dict[str, Any]:
        runtime, view = vendor.runtime, vendor.view
        if parent == "school":
            await _school(vendor, sourced_id)
        elif parent == "course":
            one("course", await uc.courses(runtime, view), sourced_id, what)
        else:
            one("academicSession", await _sessions(runtime, view, "term"), sourced_id, what)
        q = vendor.query(CLASS_FIELDS, CLASS_SELECTABLE)
        found = [c for c in await uc.classes(runtime, view) if matches_parent(c, sourced_id)]
        return vendor.answer("classes", page(found, q), q)

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
    vendor: VendorRead,
    q: ListQuery,
    elements: Sequence[str] = uc.STUDENT_ELEMENTS,
    keys: set[str] | None = None,
    require: Sequence[str] = (),
) -> tuple[list[tuple[str, str]], int]:
    rows = await uc.current_students(vendor.runtime, vendor.view)
    if keys is not None:
        rows = [r for r in rows if r["sourcedId"] in keys]
    return await uc.student_page(vendor, rows, q, elements, require)


async def _release(
    vendor: VendorRead,
    candidates: Sequence[tuple[str, str]],
    elements: Sequence[str] = uc.STUDENT_ELEMENTS,
    build: uc.Builder | None = None,
) -> list[dict[str, Any]]:
    """Release the students `candidates` names (by default as OneRoster users)."""
    return await uc.release_students(vendor, candidates, elements, build or uc.user_builder(vendor.view))


@router.get("/students")
async def list_students(vendor: Lister) -> dict[str, Any]:
    q = vendor.query(STUDENT_FIELDS, USER_SELECTABLE)
    candidates, total = await _students_page(vendor, q)
    return vendor.answer("users", Page(await _release(vendor, candidates), total), q)


async def _student(vendor: VendorRead, sourced_id: str) -> dict[str, Any] | None:
    district = await uc.district_of_student(vendor.runtime, vendor.view, sourced_id)
    if district is None:
        return None
    users = await _release(vendor, [(district, sourced_id)])
    return users[0] if users else None


@router.get("/students/{sourced_id}")
async def get_student(sourced_id: str, vendor: Reader) -> dict[str, Any]:
    user = await _student(vendor, sourced_id)
    if user is None:
        raise not_found()
    return {"user": user}


@router.get("/schools/{sourced_id}/students")
async def school_students(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    await _school(vendor, sourced_id)
    q = vendor.query(STUDENT_FIELDS, USER_SELECTABLE)
    view = vendor.view
    at_school = replace(vendor, view=replace(view, scope=replace(view.scope, schools=(sourced_id,))))
    candidates, total = await _students_page(at_school, q)
    return vendor.answer("users", Page(await _release(vendor, candidates), total), q)


async def _teachers(vendor: VendorRead, keys: set[str] | None = None) -> list[uc.Teacher]:
    return await uc.teachers(vendor.runtime, vendor.view, sorted(keys) if keys is not None else None)


async def _teacher_answer(vendor: VendorRead, found: list[uc.Teacher], q: ListQuery) -> Page:
    by_user = {id(t.user): t for t in found}
    result = page([t.user for t in found], q)
    await uc.record_teachers(vendor, [by_user[id(u)] for u in result.items])
    return result


@router.get("/teachers")
async def list_teachers(vendor: Lister) -> dict[str, Any]:
    q = vendor.query(TEACHER_FIELDS, USER_SELECTABLE)
    return vendor.answer("users", await _teacher_answer(vendor, await _teachers(vendor), q), q)


async def _one_teacher(vendor: VendorRead, sourced_id: str, what: str) -> dict[str, Any]:
    """One teacher the agreement releases, released (a disclosure); else 404 naming `what`."""
    found = await _teachers(vendor, {sourced_id})
    if not found:
        raise not_found(what)
    await uc.record_teachers(vendor, found)
    return {"user": found[0].user}


@router.get("/teachers/{sourced_id}")
async def get_teacher(sourced_id: str, vendor: Reader) -> dict[str, Any]:
    return await _one_teacher(vendor, sourced_id, "teacher")


@router.get("/schools/{sourced_id}/teachers")
async def school_teachers(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    await _school(vendor, sourced_id)
    q = vendor.query(TEACHER_FIELDS, USER_SELECTABLE)
    found = [t for t in await _teachers(vendor) if any(r["org"]["sourcedId"] == sourced_id for r in t.user["roles"])]
    return vendor.answer("users", await _teacher_answer(vendor, found, q), q)


@router.get("/users")
async def list_users(vendor: Lister) -> dict[str, Any]:
    """Students, then teachers (keys only until the page is cut; then each released)."""
    q = vendor.query(USER_FIELDS, USER_SELECTABLE)
    rows = [{**r, "role": "student"} for r in await uc.current_students(vendor.runtime, vendor.view)]
    rows = uc.without(rows, await uc.hidden_students(vendor, rows, uc.STUDENT_ELEMENTS))
    teacher_rows = await uc.teacher_rows(vendor.runtime, vendor.view)
    everything = page([*rows, *teacher_rows], q)
    students = [(r["district"], r["sourcedId"]) for r in everything.items if r["role"] == "student"]
    staff = {r["sourcedId"] for r in everything.items if r["role"] != "student"}
    released = {u["sourcedId"]: u for u in await _release(vendor, students)}
    teachers = await _teachers(vendor, staff) if staff else []
    await uc.record_teachers(vendor, teachers)
    released.update({t.staff_key: t.user for t in teachers})
    users = [released[r["sourcedId"]] for r in everything.items if r["sourcedId"] in released]
    return vendor.answer("users", Page(users, everything.total), q)


@router.get("/users/{sourced_id}")
async def get_user(sourced_id: str, vendor: Reader) -> dict[str, Any]:
    user = await _student(vendor, sourced_id)
    if user is not None:
        return {"user": user}
    return await _one_teacher(vendor, sourced_id, "user")


@router.get("/demographics")
async def list_demographics(vendor: Lister) -> dict[str, Any]:
    q = vendor.query(STUDENT_FIELDS, DEMOGRAPHICS_SELECTABLE)
    candidates, total = await _students_page(vendor, q, uc.DEMOGRAPHIC_ELEMENTS)
    found = await _release(vendor, candidates, uc.DEMOGRAPHIC_ELEMENTS, uc.demographics_build)
    return vendor.answer("demographics", Page(found, total), q)


@router.get("/demographics/{sourced_id}")
async def get_demographics(sourced_id: str, vendor: Reader) -> dict[str, Any]:
    district = await uc.district_of_student(vendor.runtime, vendor.view, sourced_id)
    found = (
        await _release(vendor, [(district, sourced_id)], uc.DEMOGRAPHIC_ELEMENTS, uc.demographics_build)
        if district
        else []
    )
    if not found:
        raise not_found("demographics")
    return {"demographics": found[0]}


# --- class membership --------------------------------------------------------------------------


async def _class_members(vendor: VendorRead, class_id: str, role: str) -> set[str]:
    """The user keys enrolled in a visible class in a role (no release yet: keys only)."""
    runtime, view = vendor.runtime, vendor.view
    one("class", await uc.classes(runtime, view), class_id, "class")
    members = await uc.covered_enrollments(runtime, view, class_id=class_id, role=role, limit=10_000_000)
    return {r["user_key"] for _, r in members}


@router.get("/classes/{sourced_id}/students")
async def class_students(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    q = vendor.query(STUDENT_FIELDS, USER_SELECTABLE)
    members = await _class_members(vendor, sourced_id, "student")
    elements = (*uc.STUDENT_ELEMENTS, uc.CLASS_ELEMENT)
    candidates, total = await _students_page(vendor, q, elements, members, (uc.CLASS_ELEMENT,))
    users = await _release(vendor, candidates, elements, uc.user_builder(vendor.view, require=uc.CLASS_ELEMENT))
    return vendor.answer("users", Page(users, total), q)


@router.get("/classes/{sourced_id}/teachers")
async def class_teachers(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    q = vendor.query(TEACHER_FIELDS, USER_SELECTABLE)
    if not vendor.view.teachers_visible:
        one("class", await uc.classes(vendor.runtime, vendor.view), sourced_id, "class")
        return vendor.answer("users", Page([], 0), q)
    members = await _class_members(vendor, sourced_id, "teacher")
    found = await _teachers(vendor, members) if members else []
    return vendor.answer("users", await _teacher_answer(vendor, found, q), q)


def _classes_of_user(path: str, role: str | None, name: str) -> None:
    """`students|teachers|users/{id}/classes`: the classes a user released to the vendor is in."""

    async def route(sourced_id: str, vendor: Lister) -> dict[str, Any]:
        q = vendor.query(CLASS_FIELDS, CLASS_SELECTABLE)
        found = await uc.classes_of_user(vendor, sourced_id, role)
        if found is None:
            raise not_found("user" if role is None else role)
        return vendor.answer("classes", page(found, q), q)

    router.add_api_route(path, route, methods=["GET"], name=name)


_classes_of_user("/students/{sourced_id}/classes", "student", "student_classes")
_classes_of_user("/teachers/{sourced_id}/classes", "teacher", "teacher_classes")
_classes_of_user("/users/{sourced_id}/classes", None, "user_classes")


# --- enrollments -----------------------------------------------------------------------------


async def _enrollments(
    vendor: VendorRead, params: ListParams, only: Sequence[Predicate] = ()
) -> tuple[Page, ListQuery]:
    """The page of enrollments `params` asks for, narrowed by the `only` predicates (which win
    over the caller's filter on the same field)."""
    # Class enrollments where the agreement releases classes (students' or teachers'); else,
    # and for districts that send no classes, students' school enrollments.
    view = vendor.view
    rostered = False
    if uc.CLASS_ELEMENT in view.visible or view.teachers_visible:
        async with vendor.runtime.pool.acquire() as conn:
            rostered = await store.has_classes(conn, view.districts)
    known = CLASS_ENROLLMENT_FIELDS if rostered else SCHOOL_ENROLLMENT_FIELDS
    q = params.query(known, view, ENROLLMENT_SELECTABLE)
    q = replace(q, predicates=[*q.predicates, *only])
    if rostered:
        return await uc.class_enrollments(vendor, q), q
    return await uc.school_enrollments(vendor, q), q


@router.get("/enrollments")
async def list_enrollments(vendor: Lister) -> dict[str, Any]:
    """Class enrollments of students and teachers; for districts that send no class rosters,
    students' school enrollments (`class` null)."""
    result, q = await _enrollments(vendor, vendor.params)
    return vendor.answer("enrollments", result, q)


@router.get("/enrollments/{sourced_id}")
async def get_enrollment(sourced_id: str, vendor: Reader) -> dict[str, Any]:
    """One enrollment by its sourcedId (the pseudonymous id the lists give): found among the
    vendor's own enrollments, so released (a disclosure) exactly as in a list."""
    params = ListParams(None, None, None, None, 1, 0)
    result, _ = await _enrollments(vendor, params, [Predicate("sourcedId", "=", sourced_id)])
    if not result.items:
        raise not_found("enrollment")
    return {"enrollment": result.items[0]}


@router.get("/schools/{sourced_id}/enrollments")
async def school_enrollments(sourced_id: str, vendor: Lister) -> dict[str, Any]:
    await _school(vendor, sourced_id)
    result, q = await _enrollments(vendor, vendor.params, [Predicate("school.sourcedId", "=", sourced_id)])
    return vendor.answer("enrollments", result, q)


# --- bulk CSV ------------------------------------------------------------------------------------


@router.get(
    "/bulk.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "a OneRoster 1.2 CSV bulk (or delta) zip"}},
)
async def bulk_zip(
    vendor: Reader,
    since: Annotated[str | None, Query(description="ISO 8601 date-time: a delta of what changed after it")] = None,
) -> Response:
    """The vendor's whole permitted roster as OneRoster 1.2 CSV files in a zip (Homeroom's extension
    of the REST binding): bulk, or with `since` a delta. One disclosure per student and teacher."""
    after = None
    if since:
        try:
            after = when(since)
        except ValueError:
            message = f"{since[:40]!r} is not an ISO 8601 date-time"
            raise Problem.validation([FieldError("query.since", "since.date", message)], message) from None
    body, _students = await roster_export.export(vendor, after)
    name = "oneroster-delta.zip" if after else "oneroster-bulk.zip"
    return Response(
        body, media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/homeroom/releases", tags=["oneroster"])
async def my_releases(vendor: Reader) -> dict[str, Any]:
    """Homeroom's extension for the vendor's own page: its agreement's terms, how many students it
    has received and when (from the read log; counts only, no release)."""
    return await uc.releases(vendor.runtime, vendor.view)
