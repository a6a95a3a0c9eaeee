"""OneRoster 1.2 rostering REST, the subset vendors' apps use to pull rosters:
`/ims/oneroster/rostering/v1p2/` orgs, schools, students, enrollments (lists and single
objects), with `filter`, `limit`/`offset` and `dateLastModified` incremental pulls.

Only vendors call it, and every answer is cut to their agreement: districts and schools
the agreement covers, and per student the elements the consent decision allows (one
batch of decisions per page). Each student released on a page is a disclosure (one
disclosure.v1 event per student, channel `oneroster`), recorded before the page returns.

`filter` supports predicates `field<op>'value'` with the operators = != > >= < <= ~
(contains), joined by ` AND `. Students can be filtered on sourcedId, status and
dateLastModified (the pseudonymised store cannot search sealed names); orgs, schools and
enrollments on any of their top-level string fields and `school.sourcedId`/`user.sourcedId`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from homeroom.auth import Principal, Role, require_roles
from homeroom.problems import FieldError, Problem
from homeroom.service import Runtime, RuntimeDep
from homeroom.storage import BIGINT_MAX
from services.records import store
from services.records.api import (
    CHANNEL_ONEROSTER,
    Release,
    commit_releases,
    consent_client,
    consent_unavailable,
    denied,
    not_found,
    open_record,
    requester_json,
    security_log,
    today,
    vendor_gate,
)
from services.records.consent_client import AgreementScope, ConsentUnavailable, DecisionRequest
from services.records.metrics import READS
from services.records.record import statements_travelling

PREFIX = "/ims/oneroster/rostering/v1p2"
router = APIRouter(prefix=PREFIX, tags=["oneroster"], dependencies=[Depends(security_log)])
Vendor = Annotated[Principal, Depends(require_roles(Role.VENDOR))]

# OneRoster user fields and the catalogue element each one releases.
USER_FIELDS: dict[str, str] = {
    "givenName": "student.first_name",
    "familyName": "student.last_name",
    "middleName": "student.middle_name",
    "email": "student.email",
    "identifier": "student.local_id",
}
ENROLLMENT_ELEMENTS = ("enrollment.school_id", "enrollment.entry_date", "enrollment.exit_date")
# The enrollment fields a vendor may filter on, and the element each one shows: filtering on
# a field the agreement withholds would answer differently by its hidden value (bisecting a
# blanked beginDate took 13 requests), so that is a 400 naming the field.
ENROLLMENT_FILTER_FIELDS: dict[str, str | None] = {
    "sourcedId": None,  # opaque (Pseudonymizer.enrollment_id)
    "status": None,
    "dateLastModified": None,
    "role": None,
    "primary": None,
    "user.sourcedId": None,
    "school.sourcedId": "enrollment.school_id",
    "beginDate": "enrollment.entry_date",
    "endDate": "enrollment.exit_date",
}


def refuse_hidden_fields(predicates: list[Predicate], fields: dict[str, str | None], visible: set[str]) -> None:
    """A 400 naming the first predicate on a field the caller may not see (or does not exist)."""
    for predicate in predicates:
        if predicate.field not in fields:
            raise _bad_filter(
                "filter.field_unsupported",
                f"cannot filter on {predicate.field!r} here; use one of {sorted(fields)}",
            )
        element = fields[predicate.field]
        if element is not None and element not in visible:
            raise _bad_filter(
                "filter.field_withheld",
                f"cannot filter on {predicate.field!r}: the agreement does not release {element}",
            )


STUDENT_ELEMENTS = (*USER_FIELDS.values(), "enrollment.grade_level", "enrollment.school_id")

_PREDICATE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*(!=|>=|<=|=|>|<|~)\s*'((?:[^']|'')*)'\s*$")


@dataclass(frozen=True, slots=True)
class Predicate:
    field: str
    op: str
    value: str

    def test(self, actual: Any) -> bool:
        if actual is None:
            return self.op == "!="
        text = str(actual)
        if self.op == "=":
            return text == self.value
        if self.op == "!=":
            return text != self.value
        if self.op == "~":
            return self.value.lower() in text.lower()
        if self.field == "dateLastModified" or self.field.endswith("Date"):
            return _compare(_when(text), self.op, _when(self.value))
        return _compare(text, self.op, self.value)


def _compare(a: Any, op: str, b: Any) -> bool:
    return bool({">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op])


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_filter(raw: str | None, allowed: set[str] | None = None) -> list[Predicate]:
    """`field='value' AND dateLastModified>'2026-01-01T00:00:00Z'` to predicates; a 400
    problem naming the part that does not parse or a field that cannot be filtered on."""
    if not raw:
        return []
    if re.search(r"\sOR\s", raw):
        raise _bad_filter("filter.or_unsupported", "OR is not supported; use AND")
    predicates = []
    for part in re.split(r"\s+AND\s+", raw.strip()):
        match = _PREDICATE.match(part)
        if match is None:
            raise _bad_filter("filter.syntax", f"cannot read the predicate {part[:80]!r} (expected field<op>'value')")
        predicate = Predicate(match.group(1), match.group(2), match.group(3).replace("''", "'"))
        if allowed is not None and predicate.field not in allowed:
            raise _bad_filter(
                "filter.field_unsupported", f"cannot filter on {predicate.field!r} here; use one of {sorted(allowed)}"
            )
        if predicate.field == "dateLastModified" or (predicate.field.endswith("Date") and predicate.op not in "=!=~"):
            try:
                _when(predicate.value)
            except ValueError:
                raise _bad_filter("filter.date", f"{predicate.value!r} is not an ISO 8601 date-time") from None
        predicates.append(predicate)
    return predicates


def _bad_filter(rule: str, message: str) -> Problem:
    return Problem(400, "Bad filter", message, errors=[FieldError("query.filter", rule, message)])


def _get(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def matches(obj: dict[str, Any], predicates: list[Predicate]) -> bool:
    return all(p.test(_get(obj, p.field)) for p in predicates)


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ref(kind: str, sourced_id: str) -> dict[str, str]:
    path = {"org": "orgs", "user": "users"}.get(kind, kind + "s")
    return {"href": f"{PREFIX}/{path}/{sourced_id}", "sourcedId": sourced_id, "type": kind}


async def _scope(runtime: Runtime, principal: Principal) -> tuple[AgreementScope, date | None, date | None]:
    start, end = await vendor_gate(runtime, principal)
    try:
        scope = await consent_client(runtime).scope(principal.agreement_id or "")
    except ConsentUnavailable as exc:
        raise consent_unavailable(exc) from None
    if scope is None:
        raise denied("agreement_inactive", "the agreement is not known to the consent service")
    return scope, start, end


def rostering_purpose(scope: AgreementScope) -> str | None:
    """OneRoster is rostering: the purpose asked and recorded when the agreement permits it (else
    the decision records the agreement's own purposes)."""
    return "rostering" if "rostering" in scope.purposes else None


def _school_covered(scope: AgreementScope, school_id: str) -> bool:
    return not scope.schools or school_id in scope.schools


def _page(items: list[dict[str, Any]], limit: int, offset: int) -> list[dict[str, Any]]:
    return items[offset : offset + limit]


MAX_LIMIT = 1000
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
# offset + limit reaches PostgreSQL as a bigint: past it the driver would overflow (a 500).
Offset = Annotated[int, Query(ge=0, le=BIGINT_MAX - MAX_LIMIT)]


# --- orgs and schools (no student data) -------------------------------------------------


async def _orgs(runtime: Runtime, scope: AgreementScope) -> list[dict[str, Any]]:
    async with runtime.pool.acquire() as conn:
        schools = await store.list_schools(conn, scope.districts)
    out: list[dict[str, Any]] = []
    for district in sorted(scope.districts):
        children = [s for s in schools if s["district_id"] == district and _school_covered(scope, s["school_id"])]
        stamps = [s["updated_at"] for s in children]
        out.append(
            {
                "sourcedId": district,
                "status": "active",
                "dateLastModified": _stamp(max(stamps)) if stamps else "1970-01-01T00:00:00.000Z",
                "name": district,
                "type": "district",
                "identifier": district,
                "parent": None,
                "children": [_ref("org", s["school_id"]) for s in children],
            }
        )
        for school in children:
            out.append(
                {
                    "sourcedId": school["school_id"],
                    "status": "tobedeleted" if school["deleted"] else "active",
                    "dateLastModified": _stamp(school["updated_at"]),
                    "name": school["name"],
                    "type": "school",
                    "identifier": school["nces_id"],
                    "parent": _ref("org", district),
                    "children": [],
                }
            )
    return out


@router.get("/orgs")
async def list_orgs(
    principal: Vendor, runtime: RuntimeDep, filter: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    scope, _, _ = await _scope(runtime, principal)
    predicates = parse_filter(filter)
    orgs = [o for o in await _orgs(runtime, scope) if matches(o, predicates)]
    return {"orgs": _page(orgs, limit, offset)}


@router.get("/orgs/{sourced_id}")
async def get_org(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    scope, _, _ = await _scope(runtime, principal)
    for org in await _orgs(runtime, scope):
        if org["sourcedId"] == sourced_id:
            return {"org": org}
    raise not_found("org")


@router.get("/schools")
async def list_schools(
    principal: Vendor, runtime: RuntimeDep, filter: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    scope, _, _ = await _scope(runtime, principal)
    predicates = parse_filter(filter)
    schools = [o for o in await _orgs(runtime, scope) if o["type"] == "school" and matches(o, predicates)]
    return {"orgs": _page(schools, limit, offset)}


@router.get("/schools/{sourced_id}")
async def get_school(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    scope, _, _ = await _scope(runtime, principal)
    for org in await _orgs(runtime, scope):
        if org["type"] == "school" and org["sourcedId"] == sourced_id:
            return {"org": org}
    raise not_found("school")


# --- students ---------------------------------------------------------------------------


STUDENT_FILTER_FIELDS = {"sourcedId", "status", "dateLastModified"}


async def _student_candidates(
    runtime: Runtime, scope: AgreementScope, predicates: list[Predicate], limit: int, offset: int
) -> list[tuple[str, str]]:
    """(district, student key) of the page, from SQL: students currently enrolled at a
    covered school of a covered district, ordered by district then key."""
    updated_after: datetime | None = None
    key: str | None = None
    for p in predicates:
        if p.field == "dateLastModified" and p.op in (">", ">="):
            updated_after = _when(p.value)
        if p.field == "sourcedId" and p.op == "=":
            key = p.value
    out: list[tuple[str, str]] = []
    for district in sorted(scope.districts):
        async with store.district_tx(runtime.pool, district) as conn:
            rows = await store.list_student_keys(
                conn,
                district,
                school_ids=list(scope.schools) if scope.schools else None,
                current_on=today(),
                updated_after=updated_after,
                student_key=key,
                limit=offset + limit,
                offset=0,
            )
        for r in rows:
            obj = {"sourcedId": r["student_key"], "status": "active", "dateLastModified": _stamp(r["updated_at"])}
            if matches(obj, predicates):
                out.append((district, r["student_key"]))
    return out[offset : offset + limit]


async def _users(
    runtime: Runtime, principal: Principal, scope: AgreementScope, candidates: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    by_district: dict[str, list[str]] = {}
    for district, key in candidates:
        by_district.setdefault(district, []).append(key)
    found: dict[tuple[str, str], store.StoredRecord] = {}
    for district, keys in by_district.items():
        async with store.district_tx(runtime.pool, district) as conn:
            for stored in await store.load_roster(conn, district, keys):
                found[(district, stored.student_key)] = stored
    loaded = [found[c] for c in candidates if c in found]
    requests = [
        DecisionRequest(
            action="read",
            requester=requester_json(principal),
            student_key=s.student_key,
            district_id=s.district_id,
            school_id=min(s.school_ids(current_on=today()), default=None),
            elements=STUDENT_ELEMENTS,
            purpose=rostering_purpose(scope),
        )
        for s in loaded
    ]
    try:
        decisions = await consent_client(runtime).decide_many(requests) if requests else []
    except ConsentUnavailable as exc:
        raise consent_unavailable(exc) from None
    users: list[dict[str, Any]] = []
    releases: list[Release] = []
    for stored, decision in zip(loaded, decisions, strict=True):
        if not decision.allow:
            continue
        allowed = set(decision.elements_allowed)
        opened = await open_record(runtime, stored)
        released: set[str] = set()
        user: dict[str, Any] = {
            "sourcedId": stored.student_key,
            "status": "active",
            "dateLastModified": _stamp(stored.updated_at),
            "enabledUser": True,
            "roles": [],
        }
        for field, element in USER_FIELDS.items():
            if element in allowed and element in opened.elements:
                user[field] = opened.elements[element]
                released.add(element)
        if "enrollment.school_id" in allowed:
            schools = sorted(s for s in stored.school_ids(current_on=today()) if _school_covered(scope, s))
            user["roles"] = [
                {"roleType": "primary" if i == 0 else "secondary", "role": "student", "org": _ref("org", s)}
                for i, s in enumerate(schools)
            ]
            if schools:
                released.add("enrollment.school_id")
        grade = opened.elements.get("enrollment.grade_level")
        if "enrollment.grade_level" in allowed and grade:
            user["grades"] = [grade]
            released.add("enrollment.grade_level")
        # FERPA 99.21: the parent's statement on a released element travels with it (OneRoster's
        # `metadata` extension), with the district's decision on the requested amendment.
        statements = statements_travelling(opened, released)
        if statements:
            user["metadata"] = {"homeroom.parentStatements": statements}
            released.add("record.parent_statement")
        users.append(user)
        releases.append(Release(stored.district_id, stored.student_key, sorted(released), decision, user))
    await commit_releases(
        runtime, principal, releases, channel=CHANNEL_ONEROSTER, purpose=rostering_purpose(scope) or ""
    )
    READS.labels(principal.role.value, CHANNEL_ONEROSTER).inc(len(users))
    return users


@router.get("/students")
async def list_students(
    principal: Vendor, runtime: RuntimeDep, filter: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    scope, _, _ = await _scope(runtime, principal)
    predicates = parse_filter(filter, STUDENT_FILTER_FIELDS)
    candidates = await _student_candidates(runtime, scope, predicates, limit, offset)
    return {"users": await _users(runtime, principal, scope, candidates)}


@router.get("/students/{sourced_id}")
async def get_student(sourced_id: str, principal: Vendor, runtime: RuntimeDep) -> dict[str, Any]:
    scope, _, _ = await _scope(runtime, principal)
    candidates = await _student_candidates(runtime, scope, [Predicate("sourcedId", "=", sourced_id)], 1, 0)
    users = await _users(runtime, principal, scope, candidates)
    if not users:
        raise not_found()
    return {"user": users[0]}


# --- enrollments ------------------------------------------------------------------------


@router.get("/enrollments")
async def list_enrollments(
    principal: Vendor, runtime: RuntimeDep, filter: str | None = None, limit: Limit = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Students' school enrollments (Homeroom keeps no class sections: `class` is null)."""
    scope, _start, end = await _scope(runtime, principal)
    predicates = parse_filter(filter)
    refuse_hidden_fields(predicates, ENROLLMENT_FILTER_FIELDS, set(scope.elements))
    # What SQL can do: covered schools, the agreement's end, and the common predicates;
    # with no other predicate the page bounds the query too.
    sql_fields = {
        ("dateLastModified", ">"),
        ("dateLastModified", ">="),
        ("user.sourcedId", "="),
        ("school.sourcedId", "="),
    }
    updated_after = next(
        (_when(p.value) for p in predicates if p.field == "dateLastModified" and p.op in (">", ">=")), None
    )
    user = next((p.value for p in predicates if p.field == "user.sourcedId" and p.op == "="), None)
    school_id = next((p.value for p in predicates if p.field == "school.sourcedId" and p.op == "="), None)
    bounded = all((p.field, p.op) in sql_fields for p in predicates)
    rows: list[tuple[str, dict[str, Any]]] = []
    for district in sorted(scope.districts):
        async with store.district_tx(runtime.pool, district) as conn:
            found = await store.list_enrollments(
                conn,
                district,
                school_ids=list(scope.schools) if scope.schools else None,
                updated_after=updated_after - timedelta(microseconds=1) if updated_after else None,
                student_key=user,
                school_id=school_id,
                entry_on_or_before=end,
                limit=offset + limit if bounded else None,
            )
        for e in found:
            obj = {
                "sourcedId": runtime.pseudonymizer.enrollment_id(
                    district, e["student_key"], e["school_id"], e["entry_date"].isoformat()
                ),
                "status": "active",
                "dateLastModified": _stamp(e["updated_at"]),
                "role": "student",
                "primary": True,
                "user": _ref("user", e["student_key"]),
                "class": None,
                "school": _ref("org", e["school_id"]),
                "beginDate": e["entry_date"].isoformat(),
                "endDate": e["exit_date"].isoformat() if e["exit_date"] else None,
            }
            if matches(obj, predicates):
                rows.append((district, obj))
    page = rows[offset : offset + limit]
    school_of: dict[tuple[str, str], str] = {}
    for district, obj in page:
        ref = (district, obj["user"]["sourcedId"])
        school_of[ref] = min(school_of.get(ref, obj["school"]["sourcedId"]), obj["school"]["sourcedId"])
    students = sorted(school_of)
    requests = [
        DecisionRequest(
            action="read",
            requester=requester_json(principal),
            student_key=key,
            district_id=district,
            school_id=school_of[(district, key)],
            elements=ENROLLMENT_ELEMENTS,
            purpose=rostering_purpose(scope),
        )
        for district, key in students
    ]
    try:
        decisions = await consent_client(runtime).decide_many(requests) if requests else []
    except ConsentUnavailable as exc:
        raise consent_unavailable(exc) from None
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
    await commit_releases(
        runtime, principal, releases, channel=CHANNEL_ONEROSTER, purpose=rostering_purpose(scope) or ""
    )
    READS.labels(principal.role.value, CHANNEL_ONEROSTER).inc(len(releases))
    return {"enrollments": out}
