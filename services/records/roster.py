"""OneRoster 1.2 rostering objects and collection rules, pure (no I/O): what an academic session,
course, class, teacher or class enrollment looks like on the wire, and how a collection answers
`filter`, `sort`/`orderBy`, `fields`, `limit`/`offset`, `X-Total-Count` and `Link`
(OneRoster 1.2 REST binding, section 3).

Every field a vendor may filter or sort on is listed with the data element it shows (None: shows
no element, e.g. a class title): filtering or sorting on a field the agreement withholds would
answer by its hidden value, so that is a 400 naming the field (`filter.field_withheld`,
`sort.field_withheld`), as is a field that does not exist (`filter.field_unsupported`,
`sort.field_unsupported`, `fields.unknown`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote, urlencode

from homeroom.problems import FieldError, Problem

PREFIX = "/ims/oneroster/rostering/v1p2"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

_PREDICATE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*(!=|>=|<=|=|>|<|~)\s*'((?:[^']|'')*)'\s*$")


@dataclass(frozen=True, slots=True)
class Predicate:
    field: str
    op: str
    value: str

    def test(self, actual: Any) -> bool:
        if isinstance(actual, list):  # a list field (grades, periods): any item matches
            return any(self.test(a) for a in actual) if actual else self.op == "!="
        if actual is None:
            return self.op == "!="
        text = str(actual).lower() if isinstance(actual, bool) else str(actual)
        if self.op == "=":
            return text == self.value
        if self.op == "!=":
            return text != self.value
        if self.op == "~":
            return self.value.lower() in text.lower()
        if self.field == "dateLastModified" or self.field.endswith("Date"):
            return _compare(when(text), self.op, when(self.value))
        return _compare(text, self.op, self.value)


def _compare(a: Any, op: str, b: Any) -> bool:
    return bool({">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op])


def when(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def bad_request(param: str, rule: str, message: str, title: str = "Bad filter") -> Problem:
    return Problem(400, title, message, errors=[FieldError(f"query.{param}", rule, message)])


def _bad_filter(rule: str, message: str) -> Problem:
    return bad_request("filter", rule, message)


def parse_filter(raw: str | None, allowed: Iterable[str] | None = None) -> list[Predicate]:
    """`field='value' AND dateLastModified>'2026-01-01T00:00:00Z'` to predicates; a 400
    problem naming the part that does not parse or a field that cannot be filtered on."""
    if not raw:
        return []
    if re.search(r"\sOR\s", raw):
        raise _bad_filter("filter.or_unsupported", "OR is not supported; use AND")
    fields = set(allowed) if allowed is not None else None
    predicates = []
    for part in re.split(r"\s+AND\s+", raw.strip()):
        match = _PREDICATE.match(part)
        if match is None:
            raise _bad_filter("filter.syntax", f"cannot read the predicate {part[:80]!r} (expected field<op>'value')")
        predicate = Predicate(match.group(1), match.group(2), match.group(3).replace("''", "'"))
        if fields is not None and predicate.field not in fields:
            raise _bad_filter(
                "filter.field_unsupported", f"cannot filter on {predicate.field!r} here; use one of {sorted(fields)}"
            )
        if predicate.field == "dateLastModified" or (predicate.field.endswith("Date") and predicate.op not in "=!=~"):
            try:
                when(predicate.value)
            except ValueError:
                raise _bad_filter("filter.date", f"{predicate.value!r} is not an ISO 8601 date-time") from None
        predicates.append(predicate)
    return predicates


def refuse_hidden_fields(predicates: list[Predicate], fields: Mapping[str, str | None], visible: set[str]) -> None:
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


def get(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def matches(obj: Mapping[str, Any], predicates: list[Predicate]) -> bool:
    return all(p.test(get(obj, p.field)) for p in predicates)


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


_PATHS = {"org": "orgs", "user": "users", "academicSession": "academicSessions", "class": "classes"}


def ref(kind: str, sourced_id: str) -> dict[str, str]:
    """A OneRoster GUIDRef; its href resolves on this API (tested for every link)."""
    href = f"{PREFIX}/{_PATHS.get(kind, kind + 's')}/{quote(sourced_id, safe='')}"
    return {"href": href, "sourcedId": sourced_id, "type": kind}


def iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- list parameters ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A collection request's parameters, checked against what the caller may see."""

    predicates: list[Predicate] = field(default_factory=list)
    sort: str | None = None
    descending: bool = False
    fields: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(
        cls,
        *,
        filter: str | None,
        sort: str | None,
        order_by: str | None,
        fields: str | None,
        limit: int,
        offset: int,
        known: Mapping[str, str | None],
        visible: set[str],
        selectable: Iterable[str],
    ) -> ListQuery:
        """``known``: field -> the data element it shows (None: none); ``visible``: the
        elements the agreement releases; ``selectable``: the object's top-level fields."""
        predicates = parse_filter(filter)
        refuse_hidden_fields(predicates, known, visible)
        if sort:
            if sort not in known:
                raise bad_request(
                    "sort",
                    "sort.field_unsupported",
                    f"cannot sort on {sort!r} here; use one of {sorted(known)}",
                    "Bad sort",
                )
            element = known[sort]
            if element is not None and element not in visible:
                raise bad_request(
                    "sort",
                    "sort.field_withheld",
                    f"cannot sort on {sort!r}: the agreement does not release {element}",
                    "Bad sort",
                )
        if order_by not in (None, "", "asc", "desc"):
            raise bad_request("orderBy", "orderBy.invalid", "orderBy must be asc or desc", "Bad orderBy")
        chosen = tuple(f.strip() for f in (fields or "").split(",") if f.strip())
        allowed = set(selectable)
        unknown = [f for f in chosen if f not in allowed]
        if unknown:
            raise bad_request(
                "fields", "fields.unknown", f"no such field {unknown[0]!r}; use some of {sorted(allowed)}", "Bad fields"
            )
        return cls(predicates, sort or None, order_by == "desc", chosen, limit, offset)

    def select(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k in self.fields} if self.fields else obj


def _sort_key(value: Any) -> tuple[int, str]:
    if value is None:
        return (1, "")
    if isinstance(value, list):
        return (0, ",".join(str(v) for v in value))
    return (0, str(value).lower() if isinstance(value, bool) else str(value))


def sort_items(items: list[dict[str, Any]], q: ListQuery) -> list[dict[str, Any]]:
    if q.sort is None:
        return list(reversed(items)) if q.descending else items
    sort = q.sort
    return sorted(items, key=lambda o: _sort_key(get(o, sort)), reverse=q.descending)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    total: int


def page(items: Sequence[dict[str, Any]], q: ListQuery) -> Page:
    """Filter, sort and cut a whole collection (collections small enough to build: sessions,
    courses, classes, teachers); the items are whole objects (fields selected later)."""
    found = [o for o in items if matches(o, q.predicates)]
    ordered = sort_items(found, q)
    return Page(ordered[q.offset : q.offset + q.limit], len(ordered))


def link_header(path: str, params: Mapping[str, str], total: int, limit: int, offset: int) -> str:
    """RFC 8288 links to the first, previous, next and last pages, as OneRoster 1.2 asks."""

    def url(at: int) -> str:
        query = {**{k: v for k, v in params.items() if k not in ("limit", "offset")}, "limit": str(limit)}
        query["offset"] = str(at)
        return f"{path}?{urlencode(query)}"

    last = max(0, ((total - 1) // limit) * limit) if total else 0
    links = [f'<{url(0)}>; rel="first"']
    if offset > 0:
        links.append(f'<{url(max(0, offset - limit))}>; rel="prev"')
    if offset + limit < total:
        links.append(f'<{url(offset + limit)}>; rel="next"')
    links.append(f'<{url(last)}>; rel="last"')
    return ", ".join(links)


# --- objects -----------------------------------------------------------------------------

SESSION_FIELDS: dict[str, str | None] = {
    "sourcedId": None,
    "status": None,
    "dateLastModified": None,
    "title": None,
    "type": None,
    "startDate": None,
    "endDate": None,
    "schoolYear": None,
    "parent.sourcedId": None,
}
COURSE_FIELDS: dict[str, str | None] = {
    "sourcedId": None,
    "status": None,
    "dateLastModified": None,
    "title": None,
    "courseCode": None,
    "grades": None,
    "subjects": None,
    "org.sourcedId": None,
    "schoolYear.sourcedId": None,
}
CLASS_FIELDS: dict[str, str | None] = {
    "sourcedId": None,
    "status": None,
    "dateLastModified": None,
    "title": None,
    "classCode": None,
    "classType": None,
    "location": None,
    "grades": None,
    "subjects": None,
    "periods": None,
    "course.sourcedId": None,
    "school.sourcedId": None,
}
TEACHER_FIELDS: dict[str, str | None] = {
    "sourcedId": None,
    "status": None,
    "dateLastModified": None,
    "role": None,
    "givenName": "staff.first_name",
    "familyName": "staff.last_name",
    "email": "staff.email",
    "identifier": "staff.identifier",
}
STAFF_USER_FIELDS = {"givenName": "staff.first_name", "familyName": "staff.last_name", "email": "staff.email",
                     "identifier": "staff.identifier"}  # fmt: skip
USER_SELECTABLE = (
    "sourcedId", "status", "dateLastModified", "metadata", "enabledUser", "username", "userIds", "givenName",
    "familyName", "middleName", "roles", "identifier", "email", "sms", "phone", "agents", "grades",
    "userMasterIdentifier", "preferredFirstName", "resources", "primaryOrg",
)  # fmt: skip
SESSION_SELECTABLE = ("sourcedId", "status", "dateLastModified", "metadata", "title", "type", "startDate", "endDate",
                      "parent", "children", "schoolYear")  # fmt: skip
COURSE_SELECTABLE = ("sourcedId", "status", "dateLastModified", "metadata", "title", "schoolYear", "courseCode",
                     "grades", "subjects", "org", "subjectCodes", "resources")  # fmt: skip
CLASS_SELECTABLE = ("sourcedId", "status", "dateLastModified", "metadata", "title", "classCode", "classType",
                    "location", "grades", "subjects", "course", "school", "terms", "subjectCodes", "periods",
                    "resources")  # fmt: skip
ENROLLMENT_SELECTABLE = ("sourcedId", "status", "dateLastModified", "metadata", "user", "class", "school", "role",
                         "primary", "beginDate", "endDate")  # fmt: skip
DEMOGRAPHICS_SELECTABLE = (
    "sourcedId", "status", "dateLastModified", "metadata", "birthDate", "sex", "americanIndianOrAlaskaNative",
    "asian", "blackOrAfricanAmerican", "nativeHawaiianOrOtherPacificIslander", "white",
    "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity", "countryOfBirthCode", "stateOfBirthAbbreviation",
    "cityOfBirth", "publicSchoolResidenceStatus",
)  # fmt: skip


def status(deleted: bool) -> str:
    return "tobedeleted" if deleted else "active"


def session_object(row: Any, children: Sequence[str]) -> dict[str, Any]:
    kind = row["session_type"]
    return {
        "sourcedId": row["session_id"],
        "status": status(row["deleted"]),
        "dateLastModified": stamp(row["updated_at"]),
        "title": row["title"],
        "type": kind,
        "startDate": row["start_date"].isoformat(),
        "endDate": row["end_date"].isoformat(),
        "parent": ref("academicSession", row["parent_id"]) if row["parent_id"] else None,
        "children": [ref("academicSession", c) for c in children],
        "schoolYear": str(row["school_year"]),
    }


def course_object(row: Any, district_id: str, year_known: bool) -> dict[str, Any]:
    return {
        "sourcedId": row["course_id"],
        "status": status(row["deleted"]),
        "dateLastModified": stamp(row["updated_at"]),
        "title": row["title"],
        "schoolYear": ref("academicSession", row["school_year_id"]) if year_known else None,
        "courseCode": row["course_code"] or None,
        "grades": list(row["grades"]),
        "subjects": list(row["subjects"]),
        "org": ref("org", row["school_id"] or district_id),
        "subjectCodes": [],
        "resources": [],
    }


def class_object(row: Any, course_known: bool, terms: Sequence[str], course_fallback: str | None) -> dict[str, Any]:
    """``course_fallback``: OneRoster requires a course; a class sent without one (Ed-Fi
    sections without a course offering) names none and `course` is null."""
    course = row["course_id"] if course_known else course_fallback
    return {
        "sourcedId": row["class_id"],
        "status": status(row["deleted"]),
        "dateLastModified": stamp(row["updated_at"]),
        "title": row["title"],
        "classCode": row["class_code"] or None,
        "classType": row["class_type"],
        "location": row["location"] or None,
        "grades": list(row["grades"]),
        "subjects": list(row["subjects"]),
        "course": ref("course", course) if course else None,
        "school": ref("org", row["school_id"]),
        "terms": [ref("academicSession", t) for t in terms],
        "subjectCodes": [],
        "periods": list(row["periods"]),
        "resources": [],
    }


def teacher_object(
    row: Any, opened: Mapping[str, str], released: set[str], schools: Sequence[str]
) -> tuple[dict[str, Any], set[str]]:
    """A teacher as a OneRoster user: only the staff elements in ``released`` (the agreement's),
    roles at the covered schools only. Returns the object and the elements it holds."""
    held = {"staff.class_assignment"}
    user: dict[str, Any] = {
        "sourcedId": row["staff_key"],
        "status": status(row["deleted"]),
        "dateLastModified": stamp(row["updated_at"]),
        "enabledUser": not row["deleted"],
        "roles": [
            {"roleType": "primary" if i == 0 else "secondary", "role": row["role"], "org": ref("org", s)}
            for i, s in enumerate(schools)
        ],
        "userIds": [],
        "agents": [],
        "grades": [],
    }
    for name, element in STAFF_USER_FIELDS.items():
        if element in released and element in opened:
            user[name] = opened[element]
            held.add(element)
    return user, held


def class_enrollment_object(row: Any, sourced_id: str) -> dict[str, Any]:
    return {
        "sourcedId": sourced_id,
        "status": status(row["deleted"]),
        "dateLastModified": stamp(row["updated_at"]),
        "user": ref("user", row["user_key"]),
        "class": ref("class", row["class_id"]),
        "school": ref("org", row["school_id"]),
        "role": row["role"],
        "primary": bool(row["is_primary"]),
        "beginDate": iso(row["begin_date"]),
        "endDate": iso(row["end_date"]),
    }


RACE_FIELDS = {
    "american_indian_alaska_native": "americanIndianOrAlaskaNative",
    "asian": "asian",
    "black_african_american": "blackOrAfricanAmerican",
    "native_hawaiian_pacific_islander": "nativeHawaiianOrOtherPacificIslander",
    "white": "white",
    "two_or_more": "demographicRaceTwoOrMoreRaces",
    "hispanic_latino": "hispanicOrLatinoEthnicity",
}
SEXES = ("female", "male", "other", "unspecified")  # ingest stores OneRoster's own codes


def demographics_object(
    key: str, modified: datetime, elements: Mapping[str, str], allowed: set[str]
) -> tuple[dict[str, Any], set[str]]:
    out: dict[str, Any] = {"sourcedId": key, "status": "active", "dateLastModified": stamp(modified)}
    held: set[str] = set()
    if "student.birth_date" in allowed and elements.get("student.birth_date"):
        out["birthDate"] = elements["student.birth_date"]
        held.add("student.birth_date")
    if "student.sex" in allowed and elements.get("student.sex"):
        sex = elements["student.sex"]
        out["sex"] = sex if sex in SEXES else "unspecified"
        held.add("student.sex")
    if "student.race_ethnicity" in allowed and "student.race_ethnicity" in elements:
        codes = set(elements["student.race_ethnicity"].split(";"))  # ingest's codes.join_codes
        for code, name in RACE_FIELDS.items():
            out[name] = code in codes
        held.add("student.race_ethnicity")
    return out, held


def unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def by(items: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], str]) -> dict[str, dict[str, Any]]:
    return {key(i): i for i in items}
