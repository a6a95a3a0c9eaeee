"""JSON Schemas (draft 2020-12) of the OneRoster 1.2 rostering answers, written from the 1EdTech
OneRoster 1.2 Rostering Service REST/JSON binding (the data models of section 4: Base, GUIDRef,
Org, AcademicSession, Course, Class, User, Role, Enrollment, Demographics). No schema package for
OneRoster 1.2 is published on PyPI, so they are written here from the specification.

Required fields are the specification's. Optional fields may also be null (Homeroom answers
null where the source sends nothing or the agreement withholds a value it must otherwise
name, e.g. an enrollment's dates). Extra fields are refused (`additionalProperties: false`),
so a field the vendor should not see cannot slip in unnoticed.
"""

from __future__ import annotations

from typing import Any

DATE = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
DATETIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$"}
GUID_TYPES = ["academicSession", "category", "class", "course", "demographics", "enrollment", "gradingPeriod",
              "lineItem", "org", "resource", "result", "term", "user", "student", "teacher"]  # fmt: skip


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


GUIDREF: dict[str, Any] = {
    "type": "object",
    "required": ["href", "sourcedId", "type"],
    "properties": {
        "href": {"type": "string", "pattern": r"^/ims/oneroster/rostering/v1p2/"},
        "sourcedId": {"type": "string", "minLength": 1},
        "type": {"enum": GUID_TYPES},
    },
    "additionalProperties": False,
}
STRINGS = {"type": "array", "items": {"type": "string"}}
REFS = {"type": "array", "items": GUIDREF}


def base(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["sourcedId", "status", "dateLastModified", *required],
        "properties": {
            "sourcedId": {"type": "string", "minLength": 1},
            "status": {"enum": ["active", "tobedeleted"]},
            "dateLastModified": DATETIME,
            "metadata": {"type": "object"},
            **properties,
        },
        "additionalProperties": False,
    }


ORG = base(
    ["name", "type"],
    {
        "name": {"type": "string"},
        "type": {"enum": ["department", "school", "district", "local", "state", "national"]},
        "identifier": nullable({"type": "string"}),
        "parent": nullable(GUIDREF),
        "children": REFS,
    },
)
ACADEMIC_SESSION = base(
    ["title", "startDate", "endDate", "type", "schoolYear"],
    {
        "title": {"type": "string"},
        "startDate": DATE,
        "endDate": DATE,
        "type": {"enum": ["gradingPeriod", "semester", "schoolYear", "term"]},
        "parent": nullable(GUIDREF),
        "children": REFS,
        "schoolYear": {"type": "string", "pattern": r"^\d{4}$"},
    },
)
COURSE = base(
    ["title", "org"],
    {
        "title": {"type": "string"},
        "schoolYear": nullable(GUIDREF),
        "courseCode": nullable({"type": "string"}),
        "grades": STRINGS,
        "subjects": STRINGS,
        "org": GUIDREF,
        "subjectCodes": STRINGS,
        "resources": REFS,
    },
)
CLASS = base(
    ["title", "course", "school", "terms"],
    {
        "title": {"type": "string"},
        "classCode": nullable({"type": "string"}),
        "classType": {"enum": ["homeroom", "scheduled"]},
        "location": nullable({"type": "string"}),
        "grades": STRINGS,
        "subjects": STRINGS,
        "course": GUIDREF,
        "school": GUIDREF,
        "terms": {"type": "array", "items": GUIDREF, "minItems": 1},
        "subjectCodes": STRINGS,
        "periods": STRINGS,
        "resources": REFS,
    },
)
ROLE = {
    "type": "object",
    "required": ["roleType", "role", "org"],
    "properties": {
        "roleType": {"enum": ["primary", "secondary"]},
        "role": {
            "enum": [
                "aide",
                "counselor",
                "districtAdministrator",
                "guardian",
                "parent",
                "principal",
                "proctor",
                "relative",
                "siteAdministrator",
                "student",
                "systemAdministrator",
                "teacher",
            ]
        },
        "org": GUIDREF,
        "userProfile": {"type": "string"},
        "beginDate": DATE,
        "endDate": DATE,
    },
    "additionalProperties": False,
}
USER = base(
    ["enabledUser", "givenName", "familyName", "roles"],
    {
        "userMasterIdentifier": {"type": "string"},
        "username": {"type": "string"},
        "userIds": {"type": "array"},
        "enabledUser": {"type": "boolean"},
        "givenName": {"type": "string"},
        "familyName": {"type": "string"},
        "middleName": {"type": "string"},
        "preferredFirstName": {"type": "string"},
        "roles": {"type": "array", "items": ROLE, "minItems": 1},
        "primaryOrg": GUIDREF,
        "identifier": {"type": "string"},
        "email": {"type": "string"},
        "sms": {"type": "string"},
        "phone": {"type": "string"},
        "agents": REFS,
        "grades": STRINGS,
        "resources": REFS,
    },
)
ENROLLMENT = base(
    ["user", "class", "school", "role"],
    {
        "user": GUIDREF,
        "class": GUIDREF,
        "school": GUIDREF,
        "role": {"enum": ["administrator", "proctor", "student", "teacher"]},
        "primary": {"type": "boolean"},
        "beginDate": nullable(DATE),
        "endDate": nullable(DATE),
    },
)
DEMOGRAPHICS = base(
    [],
    {
        "birthDate": DATE,
        "sex": {"enum": ["male", "female", "other", "unspecified"]},
        **{
            name: {"type": "boolean"}
            for name in (
                "americanIndianOrAlaskaNative",
                "asian",
                "blackOrAfricanAmerican",
                "nativeHawaiianOrOtherPacificIslander",
                "white",
                "demographicRaceTwoOrMoreRaces",
                "hispanicOrLatinoEthnicity",
            )
        },
    },
)


def collection(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": [name],
        "properties": {name: {"type": "array", "items": item}},
        "additionalProperties": False,
    }


def single(name: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": [name],
        "properties": {name: item},
        "additionalProperties": False,
    }


# The answer's wrapper name and item schema, by collection.
COLLECTIONS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "orgs": ("orgs", "org", ORG),
    "schools": ("orgs", "org", ORG),
    "academicSessions": ("academicSessions", "academicSession", ACADEMIC_SESSION),
    "terms": ("academicSessions", "academicSession", ACADEMIC_SESSION),
    "gradingPeriods": ("academicSessions", "academicSession", ACADEMIC_SESSION),
    "courses": ("courses", "course", COURSE),
    "classes": ("classes", "class", CLASS),
    "users": ("users", "user", USER),
    "students": ("users", "user", USER),
    "teachers": ("users", "user", USER),
    "enrollments": ("enrollments", "enrollment", ENROLLMENT),
    "demographics": ("demographics", "demographics", DEMOGRAPHICS),
}
