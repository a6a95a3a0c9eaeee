"""Business rules applied across one submission, after parsing. Pure; no I/O.

The parsers (``services.ingest.formats``) already refuse what one record shows on its own:
schema, types, code lists, impossible dates, forbidden and unknown elements. The
:class:`Validator` adds what needs the whole submission or the district's context: is the
school the district's, is this record a repeat, does the student exist, was the student
enrolled on the day of the absence.

It streams: ``Validator.run(items)`` yields accepted records, warnings and errors as they are
decided. A record that refers to something not seen yet (an enrollment whose student comes
later in the upload, an absence before its enrollment) is held back and decided at the end,
so input order does not matter; the records held are the only ones kept in memory, beside one
8-byte digest per record (duplicates), the set of student ids and the enrollment windows.

Rule ids are stable: the service publishes this table and dead letters carry them.

==================================  =====  ===========================================================
rule                                where  meaning
==================================  =====  ===========================================================
file.unreadable                     P      the container or document cannot be read (corrupt zip, not
                                           JSON/XML/UTF-8); records before the damage were read
xml.forbidden                       P      the XML has a DTD, entity declarations or external references
                                           (XML bombs, XXE): the whole file is refused
file.too_large                      P      a zip member declares more data than the configured ceiling
manifest.missing / manifest.invalid P      OneRoster manifest.csv absent or not understood
manifest.file_missing               P      the manifest lists a file as bulk/delta but the zip lacks it
manifest.file_ignored               P      warning: a data file is in the zip but the manifest marks it absent
file.not_used                       P      warning: OneRoster files Homeroom collects nothing from (never opened)
schema.required                     P      a required field is missing or empty
schema.type                         P      a field has the wrong type (text, object, true/false, list)
schema.invalid                      P      a value is not allowed in that place (e.g. batch version)
schema.inconsistent                 P      two fields of one record contradict each other
schema.duplicate_member             P      the same JSON member name twice in one object
schema.columns                      P      a CSV row has more or fewer cells than the header
record.type_unknown                 P      a batch record type / XML record element that is not accepted
record.too_large                    P      one record is larger than the configured limit
code.unknown                        P      a coded value is not in its code list (an error when the field
                                           is required; a warning, value dropped, when optional)
date.invalid                        P      not a real calendar date in YYYY-MM-DD form
value.too_long                      P      text longer than the limit for that field
value.invalid_characters            P      control characters in a name, id or code
encoding.invalid                    P      bytes that are not UTF-8 inside a value
ssn.forbidden                       P      a Social Security number: a field named for one, an Ed-Fi
                                           identification code with an SSN system, or an SSN-shaped value
element.forbidden                   P      an element on the catalogue's forbidden list (discipline
                                           incident details)
element.unknown                     P      Homeroom JSON batch only: a member that is not in the batch
                                           schema (other formats drop what they do not use)
element.not_allowed_here            P      a catalogue element in a place it does not belong
reference.unknown_school            P      OneRoster: a school sourcedId not in orgs.csv
reference.unknown_class             P      OneRoster: a class sourcedId not in classes.csv
oneroster.role_unknown              P      OneRoster 1.2: a user with no row in roles.csv (warning)
record.duplicate                    V      the same record (same source_record_id) earlier in this
                                           submission; the first is kept
school.not_in_district              V      the school is not one of the district's schools
organization.other_district         V      an education agency in the upload is not this district
reference.unknown_student           V      no accepted student with this id in the upload or on record
reference.no_enrollment             V      a withdrawal, absence or suspension for a student never
                                           enrolled at that school
date.exit_before_entry              V      an exit / withdrawal date before the entry date
date.end_before_start               V      a suspension that ends before it starts
date.future_attendance              V      attendance for a day after today
date.attendance_outside_enrollment  V      attendance on a day outside every enrollment at that school
date.suspension_outside_enrollment  V      a suspension starting outside every enrollment at that school
date.birth_in_future                V      a birth date after today
date.birth_implausible              V      warning: a birth date that makes the student under 2 or
                                           over 30 years old
calendar.date_outside_year          V      a calendar date or session outside the school year it names
element.dropped                     S      warning, once per element name: allowed by the standard, not
                                           collected by Homeroom (never stored, published or logged)
record.skipped                      S      warning, once per record type: a record (or a whole
                                           interchange or file) Homeroom collects nothing from
calendar.days_mismatch              S      warning: a session declares a number of instructional days
                                           its dates (less the listed holidays) do not give
student.state_id_missing            S      warning: a student without a state id and not on record gets
                                           a district-local key (the record cannot follow a transfer)
upload.empty                        S      the upload had no body (HTTP 422; no submission is made)
==================================  =====  ===========================================================

P: refused by the parser (one record on its own); V: refused by the Validator (across the
submission); S: the service (services.ingest.pipeline, services.ingest.api).
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from homeroom.calendar import year_bounds
from services.ingest import parsed_records as pr
from services.ingest.parsed_records import Dropped, ParseItem, RecordError, RecordWarning

Window = list[date | None]  # [entry or None (unknown start), exit or None (still enrolled)]
KnownEnrollments = Mapping[tuple[str, str], Sequence[tuple[date | None, date | None]]]


@dataclass(slots=True)
class ValidationResult:
    accepted: list[pr.ParsedRecord] = field(default_factory=list)
    warnings: list[RecordWarning] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _covers(w: Window, day: date) -> bool:
    return (w[0] is None or w[0] <= day) and (w[1] is None or day <= w[1])


def _age_on(birth: date, today: date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


class Validator:
    """Cross-record rules for one submission of one district.

    ``district_schools``: the school ids the district owns (from the service's registry).
    ``district_org_ids``: other ids under which the district appears in uploads (an Ed-Fi
    LocalEducationAgencyId, a OneRoster district sourcedId).
    ``known_students``: student refs already on record (for delta uploads); None = only the upload.
    ``known_enrollments``: enrollment windows on record, keyed by (student_ref, school_id).
    """

    def __init__(
        self,
        district_id: str,
        district_schools: Iterable[str],
        today: date,
        *,
        known_enrollments: KnownEnrollments | None = None,
        known_students: Container[str] | None = None,
        district_org_ids: Iterable[str] = (),
    ) -> None:
        self.district_id = district_id
        self.district_schools = frozenset(district_schools)
        self.today = today
        self.known_enrollments = known_enrollments
        self.known_students = known_students
        org_ids = tuple(district_org_ids)
        self.district_ids = frozenset([district_id, *org_ids])
        self._check_parent = bool(org_ids)
        self._seen: set[int] = set()
        self._students: set[str] = set()
        self._windows: dict[tuple[str, str], list[Window]] = {}
        self._deferred: list[pr.ParsedRecord] = []
        self.accepted = 0
        self.refused = 0

    # --- public API --------------------------------------------------------------------------

    def run(self, items: Iterable[ParseItem]) -> Iterator[ParseItem]:
        """Validate a parser's output as a stream; held-back records come out at the end."""
        for item in items:
            yield from self.check(item)
        yield from self.finish()

    def validate(self, items: Iterable[ParseItem]) -> ValidationResult:
        """Collect everything (convenient for small submissions and tests)."""
        result = ValidationResult()
        for out in self.run(items):
            if isinstance(out, RecordError):
                result.errors.append(out)
            elif isinstance(out, RecordWarning):
                result.warnings.append(out)
            elif not isinstance(out, Dropped):
                result.accepted.append(out)
        return result

    def check(self, item: ParseItem) -> list[ParseItem]:
        """Decide one parser item now, or hold it back (then the list is empty)."""
        if isinstance(item, RecordError):
            self.refused += 1
            return [item]
        if isinstance(item, RecordWarning | Dropped):
            return [item]
        digest = _digest(item.source_record_id)
        if digest in self._seen:
            return self._refuse(
                pr.error_at(
                    item.source,
                    item.source.pointer,
                    "record.duplicate",
                    f"This {item.kind} record repeats one earlier in the same submission "
                    "(same identifying fields); only the first was taken.",
                )
            )
        self._seen.add(digest)
        return self._decide(item, final=False)

    def claim(self, r: pr.SchoolRecord, *, in_scope: bool = True) -> None:
        """An organisation the district owns (on record, or registered by this upload): a
        district record widens the ids the district appears under; a school in the uploader's
        scope becomes one of the district's schools."""
        if r.org_type is pr.OrgType.DISTRICT:
            self.district_ids = self.district_ids | {r.school_id}
        elif in_scope:
            self.district_schools = self.district_schools | {r.school_id}

    def finish(self) -> list[ParseItem]:
        """Decide every held-back record: what is still missing now is an error."""
        out: list[ParseItem] = []
        pending, self._deferred = self._deferred, []
        # enrollments first so absences held back can find the windows they open
        pending.sort(key=lambda r: not isinstance(r, pr.EnrollmentRecord))
        for record in pending:
            out.extend(self._decide(record, final=True))
        return out

    # --- rules ---------------------------------------------------------------------------------

    def _refuse(self, error: RecordError) -> list[ParseItem]:
        self.refused += 1
        return [error]

    def _accept(self, record: pr.ParsedRecord, warnings: list[ParseItem] | None = None) -> list[ParseItem]:
        self.accepted += 1
        return [*(warnings or []), record]

    def _decide(self, r: pr.ParsedRecord, *, final: bool) -> list[ParseItem]:
        if isinstance(r, pr.StudentRecord):
            return self._student(r)
        if isinstance(r, pr.SchoolRecord):
            return self._school(r)
        if isinstance(r, pr.EnrollmentRecord):
            return self._enrollment(r, final)
        if isinstance(r, pr.AttendanceRecord):
            return self._dated(r, r.date, final)
        if isinstance(r, pr.CalendarRecord):
            return self._calendar(r)
        if isinstance(r, pr.SectionRecord | pr.ClassRecord | pr.TeachingRecord):
            err = self._school_error(r, "school_id", r.school_id)
            return self._refuse(err) if err else self._accept(r)
        if isinstance(r, pr.CourseRecord):
            err = self._school_error(r, "school_id", r.school_id) if r.school_id else None
            return self._refuse(err) if err else self._accept(r)
        if isinstance(r, pr.StaffRecord):
            return self._staff(r)
        if isinstance(r, pr.SessionRecord):
            return self._accept(r)
        return self._suspension(r, final)

    def _staff(self, r: pr.StaffRecord) -> list[ParseItem]:
        """A staff member is taken for the district's own schools only: one rostered solely at
        another district's school is refused, like a student's enrollment there."""
        if r.schools and not any(s in self.district_schools for s in r.schools):
            err = self._school_error(r, "orgSourcedIds", r.schools[0])
            if err is not None:
                return self._refuse(err)
        return self._accept(r)

    def _calendar(self, r: pr.CalendarRecord) -> list[ParseItem]:
        err = self._school_error(r, "school_id", r.school_id)
        if err is not None:
            return self._refuse(err)
        first, last = year_bounds(r.school_year)
        outside = [d for d, _ in r.days if not first <= d <= last]
        outside += [t.begin for t in r.sessions if not first <= t.begin <= last]
        if outside:
            return self._refuse(
                pr.error_at(
                    r.source,
                    "date",
                    "calendar.date_outside_year",
                    f"A calendar date or session start falls outside school year {r.school_year}-{r.school_year + 1} "
                    "(1 July to 30 June).",
                    "date",
                )
            )
        return self._accept(r)

    def _school_error(self, r: pr.ParsedRecord, field: str, school_id: str) -> RecordError | None:
        if school_id in self.district_schools:
            return None
        return pr.error_at(
            r.source,
            field,
            "school.not_in_district",
            "The school is not one of this district's schools in Homeroom's registry, so the record was "
            "refused. Check the school id, or ask for the school to be registered to the district.",
        )

    def _student_known(self, ref: str) -> bool:
        return ref in self._students or (self.known_students is not None and ref in self.known_students)

    def _unknown_student(self, r: pr.ParsedRecord) -> RecordError:
        return pr.error_at(
            r.source,
            "student",
            "reference.unknown_student",
            "The student this record refers to has no accepted student record in this submission and is not on "
            "record for the district. Send the student's record too (or fix the student id).",
        )

    def _student(self, r: pr.StudentRecord) -> list[ParseItem]:
        warnings: list[ParseItem] = []
        birth = r.elements.get("student.birth_date")
        if birth is not None:
            born = date.fromisoformat(birth)
            if born > self.today:
                return self._refuse(
                    pr.error_at(
                        r.source, "student.birth_date", "date.birth_in_future", "The birth date is after today."
                    )
                )
            age = _age_on(born, self.today)
            if age < 2 or age > 30:
                warnings.append(
                    pr.warning_at(
                        r.source,
                        "student.birth_date",
                        "date.birth_implausible",
                        "The birth date makes the student younger than 2 or older than 30; please check it.",
                        "date",
                    )
                )
        # a deleted student still existed: withdrawals for them in the same upload stay valid
        self._students.add(r.student_ref)
        return self._accept(r, warnings)

    def _school(self, r: pr.SchoolRecord) -> list[ParseItem]:
        if r.org_type is pr.OrgType.DISTRICT:
            if r.school_id not in self.district_ids:
                return self._refuse(
                    pr.error_at(
                        r.source,
                        "school_id",
                        "organization.other_district",
                        "The upload describes an education agency that is not this district; "
                        "a district may only send its own data.",
                    )
                )
            return self._accept(r)
        err = self._school_error(r, "school_id", r.school_id)
        if err is None and self._check_parent and r.parent_ref and r.parent_ref not in self.district_ids:
            err = pr.error_at(
                r.source,
                "parent",
                "school.not_in_district",
                "The file says this school belongs to another education agency, not this district.",
            )
        return self._refuse(err) if err else self._accept(r)

    def _windows_for(self, student: str, school: str) -> list[Window]:
        out = list(self._windows.get((student, school), ()))
        if self.known_enrollments is not None:
            out.extend([a, b] for a, b in self.known_enrollments.get((student, school), ()))
        return out

    def _add_window(self, student: str, school: str, entry: date | None, exit_: date | None) -> None:
        windows = self._windows.setdefault((student, school), [])
        for w in windows:
            # merge overlapping windows (class enrollments in one school mostly coincide)
            starts_before_end = entry is None or w[1] is None or entry <= w[1]
            ends_after_start = exit_ is None or w[0] is None or exit_ >= w[0]
            if starts_before_end and ends_after_start:
                w[0] = None if entry is None or w[0] is None else min(entry, w[0])
                w[1] = None if exit_ is None or w[1] is None else max(exit_, w[1])
                return
        windows.append([entry, exit_])

    def _close_window(self, student: str, school: str, exit_: date) -> None:
        windows = self._windows.get((student, school))
        if windows:
            for w in windows:
                if w[1] is None and (w[0] is None or w[0] <= exit_):
                    w[1] = exit_
                    return
        self._add_window(student, school, None, exit_)

    def _enrollment(self, r: pr.EnrollmentRecord, final: bool) -> list[ParseItem]:
        err = self._school_error(r, "school_id", r.school_id)
        if err is None and r.from_school_id is not None:
            err = self._school_error(r, "from_school_id", r.from_school_id)
        if err is not None:
            return self._refuse(err)
        if r.entry_date and r.exit_date and r.exit_date < r.entry_date:
            return self._refuse(
                pr.error_at(r.source, "exit_date", "date.exit_before_entry", "The exit date is before the entry date.")
            )
        if not self._student_known(r.student_ref):
            if not final:
                self._deferred.append(r)
                return []
            return self._refuse(self._unknown_student(r))
        if r.action is pr.EnrollmentAction.WITHDRAW and r.exit_date is not None and r.entry_date is None:
            windows = self._windows_for(r.student_ref, r.school_id)
            if not windows:
                if not final:
                    self._deferred.append(r)
                    return []
                if self.known_enrollments is not None:
                    return self._refuse(
                        pr.error_at(
                            r.source,
                            "school_id",
                            "reference.no_enrollment",
                            "The student is withdrawn from a school where they have no enrollment on record.",
                        )
                    )
            elif all(w[0] is not None and w[0] > r.exit_date for w in windows):
                return self._refuse(
                    pr.error_at(
                        r.source,
                        "exit_date",
                        "date.exit_before_entry",
                        "The withdrawal date is before the student's entry date at that school.",
                    )
                )
        if r.action is pr.EnrollmentAction.ENROLL:
            self._add_window(r.student_ref, r.school_id, r.entry_date, r.exit_date)
        elif r.action is pr.EnrollmentAction.WITHDRAW:
            if r.exit_date is not None:
                if r.entry_date is not None:
                    self._add_window(r.student_ref, r.school_id, r.entry_date, r.exit_date)
                else:
                    self._close_window(r.student_ref, r.school_id, r.exit_date)
        else:
            if r.from_school_id is not None and r.entry_date is not None:
                self._close_window(r.student_ref, r.from_school_id, r.entry_date)
            self._add_window(r.student_ref, r.school_id, r.entry_date, None)
        return self._accept(r)

    def _suspension(self, r: pr.SuspensionRecord, final: bool) -> list[ParseItem]:
        if r.end_date is not None and r.end_date < r.start_date:
            return self._refuse(
                pr.error_at(r.source, "end_date", "date.end_before_start", "The suspension ends before it starts.")
            )
        return self._dated(r, r.start_date, final)

    def _dated(self, r: pr.AttendanceRecord | pr.SuspensionRecord, day: date, final: bool) -> list[ParseItem]:
        err = self._school_error(r, "school_id", r.school_id)
        if err is not None:
            return self._refuse(err)
        is_attendance = isinstance(r, pr.AttendanceRecord)
        if is_attendance and day > self.today:
            return self._refuse(
                pr.error_at(
                    r.source, "date", "date.future_attendance", "Attendance cannot be recorded for a day after today."
                )
            )
        if not self._student_known(r.student_ref):
            if not final:
                self._deferred.append(r)
                return []
            return self._refuse(self._unknown_student(r))
        windows = self._windows_for(r.student_ref, r.school_id)
        if any(_covers(w, day) for w in windows):
            return self._accept(r)
        if not final:
            self._deferred.append(r)
            return []
        what = "attendance" if is_attendance else "suspension"
        if not windows:
            return self._refuse(
                pr.error_at(
                    r.source,
                    "school_id",
                    "reference.no_enrollment",
                    f"The {what} is for a student with no enrollment at that school, in this submission or on record.",
                )
            )
        return self._refuse(
            pr.error_at(
                r.source,
                "date" if is_attendance else "start_date",
                f"date.{what}_outside_enrollment",
                f"The {what} date falls outside every enrollment of the student at that school.",
            )
        )
