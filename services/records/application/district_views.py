"""What the owning district's staff (and its own letters) learn of the district's own students;
the district owns these records, so nothing here is a disclosure.

Use cases:
- `chronic_absence_worklist`: students over the chronic-absence line (as the absence reviewer
  counted them), with their names; school staff: their schools.
- `student_names`: names of the district's students for its staff's pages, and with a day each
  one's FERPA eligibility (never the birth date itself).
- `notice_preferences`: each family's letter language, for the district's own letters."""

from __future__ import annotations

from datetime import date
from typing import Any

from homeroom.auth import Principal, Role
from homeroom.contracts.notice_preferences import NoticePreference, NoticePreferences, NoticePreferencesRequest
from homeroom.contracts.student_directory import DistrictStudents, Eligibility
from homeroom.crypto import DecryptionError
from homeroom.service import Runtime
from homeroom.storage import Connection
from services.records import store
from services.records.application.refusals import not_found
from services.records.eligibility import eligibility
from services.records.state import today


async def chronic_absence_worklist(runtime: Runtime, principal: Principal, district_id: str) -> dict[str, Any]:
    """The worklist: since when each student is over the line, by how much, at which school."""
    if principal.district_id != district_id:
        raise not_found("district")
    threshold = runtime.settings.chronic_absence_threshold
    schools = sorted(principal.school_ids) if principal.role is Role.SCHOOL_STAFF else None
    async with store.district_tx(runtime.pool, district_id) as conn:
        rows = await store.chronic_worklist(conn, district_id, schools)
        names = await _names(runtime, conn, district_id, [r["student_key"] for r in rows])
    return {
        "district_id": district_id,
        "threshold": threshold,
        "students": [
            {
                "student_key": r["student_key"],
                "name": names.get(r["student_key"]),
                "school_id": r["school_id"],
                "absence_rate": r["absence_rate"],
                "over_by": round(r["absence_rate"] - threshold, 4),
                "days_absent": r["days_absent"],
                "days_enrolled": r["days_enrolled"],
                "as_of_date": r["as_of_date"].isoformat(),
                "flagged_at": (r["crossed_at"] or r["changed_at"]).isoformat(),
                "school_year": r["school_year"],
            }
            for r in rows
        ],
    }


async def _names(runtime: Runtime, conn: Connection, district_id: str, keys: list[str]) -> dict[str, str]:
    cipher = runtime.require_cipher()
    out: dict[str, str] = {}
    for key, sealed in (await store.sealed_names(conn, district_id, keys)).items():
        try:
            opened = await cipher.open_many(district_id, key, sealed)
        except DecryptionError:  # shredded meanwhile: no name
            continue
        parts = [opened[e].decode() for e in ("student.first_name", "student.last_name") if e in opened]
        out[key] = " ".join(parts)
    return out


async def notice_preferences(runtime: Runtime, body: NoticePreferencesRequest) -> dict[str, Any]:
    """The record's home language per student, and nothing else of the record (released to nobody)."""
    cipher = runtime.require_cipher()
    keys = list(dict.fromkeys(body.student_keys))
    preferences: dict[str, NoticePreference] = {}
    async with store.district_tx(runtime.pool, body.district_id) as conn:
        held = await store.existing_student_keys(conn, body.district_id, keys)
        sealed = await store.sealed_elements(conn, body.district_id, keys, ("student.home_language",))
    for key in keys:
        if key not in held:
            continue
        language = None
        if key in sealed:
            try:
                opened = await cipher.open_many(body.district_id, key, sealed[key])
                language = opened["student.home_language"].decode()[:100]
            except DecryptionError:  # shredded meanwhile: none
                language = None
        preferences[key] = NoticePreference(home_language=language)
    return NoticePreferences(district_id=body.district_id, preferences=preferences).model_dump()


async def student_names(
    runtime: Runtime, principal: Principal, district_id: str, student_key: list[str], on: date | None
) -> dict[str, Any]:
    """Names of the keys the caller may see (unknown keys left out); with `on`, eligibility from the
    sealed birth date and the enrollments (18, or in postsecondary education)."""
    if principal.district_id != district_id:
        raise not_found("district")
    keys = list(dict.fromkeys(student_key))
    async with store.district_tx(runtime.pool, district_id) as conn:
        if principal.role is Role.SCHOOL_STAFF:
            visible = await store.list_student_keys(
                conn, district_id, school_ids=principal.school_ids, current_on=today(runtime), limit=len(keys) + 1
            )
            allowed = {r["student_key"] for r in visible}
            keys = [k for k in keys if k in allowed]
        names = await _names(runtime, conn, district_id, keys)
        standing: dict[str, Eligibility] = {}
        if on is not None:
            known = list(names)
            sealed = await store.sealed_elements(conn, district_id, known, ("student.birth_date",))
            grades = await store.grade_levels_on(conn, district_id, known, on)
            for key in known:
                standing[key] = eligibility(
                    await _birth_date(runtime, district_id, key, sealed.get(key)), grades.get(key, []), on
                )
    return DistrictStudents(district_id=district_id, names=names, eligibility=standing).model_dump(mode="json")


async def _birth_date(runtime: Runtime, district_id: str, key: str, sealed: dict[str, bytes] | None) -> date | None:
    """The student's birth date, opened here only to compute eligibility; None if not held or unreadable."""
    if not sealed:
        return None
    try:
        opened = await runtime.require_cipher().open_many(district_id, key, sealed)
        return date.fromisoformat(opened["student.birth_date"].decode()[:10])
    except (DecryptionError, KeyError, ValueError):
        return None
