"""OneRoster 1.1 / 1.2 CSV bulk upload (a zip), streamed row by row, as real systems write it.

``manifest.csv`` decides which files are read and how (``bulk``: the file replaces what is on
record; ``delta``: changes only; ``absent``: not supplied, and not read even when present).
Files are read in dependency order: orgs, academicSessions, classes, roles (1.2), users,
demographics, enrollments. Other files (courses, results, line items, resources ...) hold no
student data Homeroom takes and are never opened: one notice names them.

What becomes what:

* ``orgs.csv`` rows of type ``school`` -> :class:`SchoolRecord`; type ``district`` -> a
  SchoolRecord with ``org_type=district``; other types are skipped.
* ``academicSessions.csv`` terms and semesters -> :class:`CalendarRecord` (source ``terms``)
  for the schools whose classes use them (all schools in orgs.csv when no class does): their
  weekdays are the school days when the district sends no other calendar.
* ``users.csv`` rows that are students -> :class:`StudentRecord` (1.1: ``role=student``;
  1.2: the user has a ``role=student`` row in ``roles.csv``). Teachers, parents and others are
  skipped without being read. Column mapping: givenName, familyName, middleName ->
  student.first/last/middle_name; identifier -> student.local_id; userMasterIdentifier (1.2)
  -> student.state_id; email -> student.email; phone (or sms) -> student.phone; grades ->
  enrollment.grade_level; userIds ``{type:id}`` entries of type state / local / district / sis
  -> state or local id (type SSN: refused). sourcedId, status, dateLastModified, enabledUser,
  orgSourcedIds, role, username, agentSourcedIds, primaryOrgSourcedId and resourceSourcedIds are
  bookkeeping: read for structure, never stored. Anything else (preferred names, pronouns,
  ``metadata.*`` columns, vendor ``ext_*`` columns) is dropped and reported by name; passwords
  and other credential columns are dropped without even being looked at.
* ``demographics.csv`` rows of students -> partial StudentRecord (birth date, sex, race and
  ethnicity flags); birth place and residence status are dropped.
* ``enrollments.csv`` rows with ``role=student`` -> class :class:`EnrollmentRecord` (enroll;
  entry date = beginDate, else the start of the class's term).
* ``status=tobedeleted``: users -> StudentRecord(deleted=True, schools=...), enrollments ->
  withdraw (exit date = endDate, else the date of dateLastModified), orgs -> SchoolRecord(deleted).

Tolerated where the meaning is unambiguous: a byte-order mark, CRLF line ends, line breaks
inside quoted cells, trailing empty header columns (a trailing comma; the rows' extra cells
must be empty), and the OneRoster 1.0 column names that 1.1 exports still carry
(``termSourcedId``, ``userId``, ``birthdate``).

School ids are the org ``sourcedId`` by default, or its ``identifier`` (often the state or NCES
school code) with ``school_id_from="identifier"``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import IO, Any, Literal, TypeVar

from homeroom.calendar import Term, school_year
from homeroom.oneroster_columns import ENROLLMENTS
from services.ingest import codes, formats
from services.ingest import parsed_records as pr
from services.ingest.formats import DEFAULT_OPTIONS, Check, Field, Made, ParseOptions, Rule
from services.ingest.parsed_records import Dropped, ParseItem, RecordError, RecordWarning, Source, record_id
from services.ingest.screening import SSN_MESSAGE, is_ssn_field, is_ssn_system, name_words

FORMAT = "oneroster"
MODES = ("absent", "bulk", "delta")
ORDER = ("orgs", "academicSessions", "courses", "classes", "roles", "users", "demographics", "enrollments")
TOBEDELETED = "tobedeleted"

USER_BOOKKEEPING = frozenset(
    [
        "sourcedId",
        "status",
        "dateLastModified",
        "enabledUser",
        "orgSourcedIds",
        "role",
        "username",
        "agentSourcedIds",
        "primaryOrgSourcedId",
        "resourceSourcedIds",
    ]
)
USER_MAPPED = frozenset(
    [
        "givenName",
        "familyName",
        "middleName",
        "identifier",
        "userMasterIdentifier",
        "email",
        "phone",
        "sms",
        "grades",
        "userIds",
    ]
)
RACE_COLUMNS = {
    "americanIndianOrAlaskaNative": "american_indian_alaska_native",
    "asian": "asian",
    "blackOrAfricanAmerican": "black_african_american",
    "nativeHawaiianOrOtherPacificIslander": "native_hawaiian_pacific_islander",
    "white": "white",
    "demographicRaceTwoOrMoreRaces": "two_or_more",
    "hispanicOrLatinoEthnicity": "hispanic_latino",
}
DEMOGRAPHIC_KNOWN = frozenset(["sourcedId", "status", "dateLastModified", "birthDate", "sex", *RACE_COLUMNS])
ENROLLMENT_KNOWN = frozenset(ENROLLMENTS)  # the standard's enrollments.csv columns, all read

# A row worth a closer look (then every cell goes through Check): control characters or
# undecodable bytes, a cell with surrounding whitespace, or anything shaped like nine digits.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1e\x7f\ufffd]")
_NINE_DIGITS = re.compile(r"\d{3}[- ]?\d{2}[- ]?\d{4}")


def _suspicious(joined: str) -> bool:
    return bool(
        _CONTROL.search(joined)
        or _NINE_DIGITS.search(joined)
        or joined[:1] == " "
        or joined[-1:] == " "
        or "\x1f " in joined
        or " \x1f" in joined
        or "\t" in joined
        or "\n" in joined
        or "\r" in joined
    )


REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "orgs": ("sourcedId", "type"),
    "users": ("sourcedId", "givenName", "familyName"),
    "roles": ("userSourcedId", "role"),
    "demographics": ("sourcedId",),
    "enrollments": ("sourcedId", "classSourcedId", "schoolSourcedId", "userSourcedId", "role"),
    "classes": ("sourcedId",),
    "courses": ("sourcedId",),
    "academicSessions": ("sourcedId",),
}
_USER_IDS = re.compile(r"\{([^:{}]*):([^{}]*)\}")
# OneRoster 1.0 column names that 1.1 exports still carry, by file.
ALIASES: dict[str, dict[str, str]] = {
    "classes": {"termSourcedId": "termSourcedIds"},
    "users": {"userId": "userIds"},
    "demographics": {"birthdate": "birthDate"},
}
_CREDENTIAL_WORDS = ("password", "passwd", "pin", "secret", "token", "hash")
TERM_TYPES = frozenset(["term", "semester"])
SESSION_TYPES = {"schoolyear": "schoolYear", "term": "term", "semester": "semester", "gradingperiod": "gradingPeriod"}
# OneRoster roles that are staff (a teacher of a class, or someone rostered with them).
STAFF_ROLES = frozenset(["teacher", "aide", "administrator", "proctor", "districtAdministrator", "siteAdministrator"])
# Staff user columns and the catalogue element each one is (only the minimum: the rest dropped).
STAFF_COLUMNS = {
    "givenName": "staff.first_name",
    "familyName": "staff.last_name",
    "email": "staff.email",
    "identifier": "staff.identifier",
}
STAFF_MAPPED = frozenset([*STAFF_COLUMNS, "userIds"])
COURSE_KNOWN = frozenset(
    [
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "courseCode",
        "orgSourcedId",
        "schoolYearSourcedId",
        "grades",
        "subjects",
        "subjectCodes",
        "resourceSourcedIds",
    ]
)
CLASS_KNOWN = frozenset(
    [
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "classCode",
        "classType",
        "location",
        "courseSourcedId",
        "schoolSourcedId",
        "termSourcedIds",
        "periods",
        "grades",
        "subjects",
        "subjectCodes",
        "resourceSourcedIds",
    ]
)


def is_credential(column: str) -> bool:
    words = name_words(column)
    return any(w.startswith(_CREDENTIAL_WORDS) for w in words)


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    modes: dict[str, str]
    source_system: str | None = None

    def mode(self, name: str) -> str:
        return self.modes.get(name, "absent")


@dataclass(slots=True)
class _Row:
    cells: list[str]
    line: int


def zip_bomb(
    members: list[zipfile.ZipInfo], *, max_total: int, max_member: int, max_ratio: float
) -> tuple[str, str] | None:
    """(rule, message) when these members would expand too far, per member or in all. Python's
    zipfile never returns more than a member's declared size, so the declared sizes bound the
    work; a member declaring a size its data cannot fill fails its CRC check when read."""
    total = compressed = 0
    for info in members:
        name = info.filename
        if info.file_size > max_member:
            return "zip.entry_too_large", f"{name} would unpack to {info.file_size} bytes; the limit is {max_member}"
        if info.file_size > max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            return (
                "zip.compression_ratio",
                f"{name} expands {ratio:.0f} times (limit {max_ratio:.0f}): refused as a possible zip bomb",
            )
        total += info.file_size
        compressed += info.compress_size
    if total > max_total:
        return "file.too_large", f"the zip's files would unpack to {total} bytes; the limit is {max_total}"
    if total > max_ratio * max(compressed, 1):
        return (
            "zip.compression_ratio",
            f"the zip expands {total / max(compressed, 1):.0f} times in all (limit {max_ratio:.0f})",
        )
    return None


class OneRosterUpload:
    """Iterate to parse; ``manifest`` and ``students_by_school`` are filled in as it goes
    (``students_by_school``: active students per school, for the bulk safety rail)."""

    def __init__(
        self,
        stream: IO[bytes],
        *,
        file: str = "oneroster.zip",
        opts: ParseOptions = DEFAULT_OPTIONS,
        school_id_from: Literal["sourcedId", "identifier"] = "sourcedId",
    ) -> None:
        self.stream = stream
        self.file = file
        self.opts = opts
        self.school_id_from = school_id_from
        self.manifest: Manifest | None = None
        self.students_by_school: dict[str, set[str]] = {}
        self._org_school: dict[str, str] = {}  # org sourcedId -> school id
        self._sessions: dict[str, date | None] = {}  # academic session -> start date
        self._terms: dict[str, tuple[str, date, date, int]] = {}  # term -> title, start, end, line
        self._term_schools: dict[str, set[str]] = {}  # term -> schools whose classes use it
        self._classes: dict[str, date | None] = {}  # class sourcedId -> term start
        self._role_students: dict[str, list[str]] = {}  # 1.2: user sourcedId -> org sourcedIds
        self._role_staff: dict[str, tuple[str, list[str]]] = {}  # 1.2: staff user -> (role, org sourcedIds)
        self._class_school: dict[str, str] = {}  # class sourcedId -> school id
        self._students: set[str] = set()
        self._date_cache: dict[str, date | None] = {}
        self._counter = formats.Counter(file, opts)

    # --- container ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ParseItem]:
        stream = self.stream
        spooled: IO[bytes] | None = None
        try:
            if not _seekable(stream):
                spooled = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115
                while chunk := stream.read(1 << 20):
                    spooled.write(chunk)
                spooled.seek(0)
                stream = spooled
            self._counter.total_bytes = formats.stream_size(stream)
            try:
                zf = zipfile.ZipFile(stream)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError):
                yield formats.file_error(self.file, "file.unreadable", "The upload is not a readable zip file.")
                return
            with zf:
                yield from self._parse(zf, stream)
        finally:
            if spooled is not None:
                spooled.close()

    def _members(self, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        out: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            if info.is_dir() or "__MACOSX" in info.filename:
                continue
            base = info.filename.rsplit("/", 1)[-1]
            if base.endswith(".csv"):
                out.setdefault(base[:-4], info)
        return out

    def _parse(self, zf: zipfile.ZipFile, stream: IO[bytes]) -> Iterator[ParseItem]:
        members = self._members(zf)
        if "manifest" not in members:
            yield formats.file_error(
                self.file, "manifest.missing", "The zip has no manifest.csv, so it cannot be read."
            )
            return
        manifest = yield from self._manifest(zf, members["manifest"])
        if manifest is None:
            return
        self.manifest = manifest
        wanted = [n for n in ORDER if manifest.mode(n) != "absent"]
        refused = zip_bomb(
            [members[n] for n in wanted if n in members],
            max_total=self.opts.max_uncompressed_bytes,
            max_member=self.opts.max_member_bytes,
            max_ratio=self.opts.max_compression_ratio,
        )
        if refused is not None:
            yield formats.file_error(self.file, refused[0], refused[1])
            return
        declared = sum(members[n].file_size for n in wanted if n in members)
        if declared > self.opts.max_uncompressed_bytes:
            yield formats.file_error(
                self.file,
                "file.too_large",
                f"The zip's files would unpack to more than {self.opts.max_uncompressed_bytes} bytes; "
                "split the upload or ask for a higher limit.",
            )
            return
        for name in wanted:
            if name not in members:
                yield formats.file_error(
                    f"{name}.csv",
                    "manifest.file_missing",
                    f"manifest.csv lists {name}.csv as {manifest.mode(name)}, but the zip does not contain it.",
                )
        for name in ORDER:
            if name in members and manifest.mode(name) == "absent" and name in ("users", "enrollments", "demographics"):
                yield RecordWarning(
                    f"{name}.csv",
                    0,
                    "",
                    "manifest.file_ignored",
                    f"{name}.csv is in the zip but manifest.csv marks it absent, so it was not read.",
                    "",
                )
        handlers: dict[str, Callable[[list[str], _Row, str], Iterable[ParseItem]]] = {
            "orgs": self._org,
            "academicSessions": self._session,
            "courses": self._course,
            "classes": self._class,
            "roles": self._role,
            "users": self._user,
            "demographics": self._demographics,
            "enrollments": self._enrollment,
        }
        unused = sorted(n for n in members if n not in ORDER and n != "manifest")
        if unused:
            yield RecordWarning(
                self.file,
                0,
                "",
                "file.not_used",
                f"Homeroom collects nothing from {', '.join(n + '.csv' for n in unused)}; they were not read.",
                "",
            )
        calendar_after = "classes" if "classes" in wanted and "classes" in members else "academicSessions"
        for name in wanted:
            if name in members:
                yield from self._read(zf, members[name], f"{name}.csv", handlers[name], stream)
            if name == calendar_after:
                yield from self._term_calendars()
        # the central directory was read when the zip was opened: the whole file has been consumed
        self._counter.done(self._counter.total_bytes or _tell(stream))

    def _manifest(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Generator[ParseItem, None, Manifest | None]:
        props: dict[str, str] = {}
        try:
            with zf.open(info) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
                for row in csv.reader(text):
                    if len(row) >= 2:
                        props[row[0].strip()] = row[1].strip()
        except (zipfile.BadZipFile, zlib.error, OSError, csv.Error, EOFError, RuntimeError, NotImplementedError):
            yield formats.file_error("manifest.csv", "file.unreadable", "manifest.csv cannot be read.")
            return None
        version = props.get("oneroster.version", "")
        if version not in ("1.1", "1.2"):
            yield formats.file_error(
                "manifest.csv",
                "manifest.invalid",
                "manifest.csv must give oneroster.version 1.1 or 1.2.",
                field="oneroster.version",
            )
            return None
        modes: dict[str, str] = {}
        for key, value in props.items():
            if key.startswith("file."):
                mode = value.lower()
                if mode not in MODES:
                    yield formats.file_error(
                        "manifest.csv",
                        "manifest.invalid",
                        f"{key} must be absent, bulk or delta.",
                        field=key,
                    )
                    return None
                modes[key[5:]] = mode
        return Manifest(version, modes, props.get("source.systemName"))

    def _read(
        self,
        zf: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        name: str,
        handler: Callable[[list[str], _Row, str], Iterable[ParseItem]],
        stream: IO[bytes],
    ) -> Iterator[ParseItem]:
        try:
            with zf.open(info) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
                reader = csv.reader(text, strict=True)
                try:
                    header = [h.strip() for h in next(reader)]
                except StopIteration:
                    yield formats.file_error(name, "schema.columns", f"{name} is empty: it has no header row.", 1)
                    return
                full_width = len(header)
                while header and not header[-1]:  # a trailing comma in the header
                    header.pop()
                aliases = ALIASES.get(name[:-4], {})
                header = [aliases.get(h, h) if aliases.get(h, h) not in header else h for h in header]
                width = len(header)
                line = reader.line_num
                missing = [c for c in REQUIRED_COLUMNS.get(name[:-4], ()) if c not in header]
                if self.manifest is not None and self.manifest.version == "1.1" and name == "users.csv":
                    missing += [c for c in ("role",) if c not in header]
                if missing:
                    yield formats.file_error(
                        name,
                        "schema.columns",
                        f"{name} lacks the column(s) {', '.join(missing)}, so none of its rows were read.",
                        1,
                    )
                    return
                mode = self.manifest.mode(name[:-4]) if self.manifest else "bulk"
                while True:
                    start = line + 1
                    try:
                        cells = next(reader)
                    except StopIteration:
                        break
                    except csv.Error as exc:
                        line = reader.line_num
                        yield RecordError(
                            name, start, "", "schema.columns", f"The row is not well-formed CSV ({exc}).", ""
                        )
                        continue
                    line = reader.line_num
                    self._counter.row(lambda: _tell(stream))
                    if not cells:
                        continue
                    if len(cells) != width and width < len(cells) <= full_width and not any(cells[width:]):
                        cells = cells[:width]
                    if len(cells) != width:
                        yield RecordError(
                            name,
                            start,
                            "",
                            "schema.columns",
                            f"The row has {len(cells)} cells but the header has {width}.",
                            "",
                        )
                        continue
                    yield from handler(header, _Row(cells, start), mode)
        except (
            zipfile.BadZipFile,
            zlib.error,
            OSError,
            EOFError,
            ValueError,
            RuntimeError,
            NotImplementedError,
        ) as exc:
            yield formats.file_error(
                name, "file.unreadable", f"{name} could not be read to the end ({type(exc).__name__})."
            )

    # --- helpers -----------------------------------------------------------------------------

    def _date(self, text: str) -> date | None:
        try:
            return self._date_cache[text]
        except KeyError:
            d = codes.parse_date(text)
            if len(self._date_cache) < 10_000:
                self._date_cache[text] = d
            return d

    def _school_id(self, org_sid: str) -> str | None:
        if self.school_id_from == "sourcedId":
            return org_sid
        return self._org_school.get(org_sid)

    def _made(self, file: str, row: _Row, make: Callable[[Check], Made]) -> Sequence[ParseItem]:
        """One row's errors, or what was dropped from it, its warnings and what ``make`` made of
        it (``make`` reads the row's fields through the check it is given)."""
        check = Check(Source(FORMAT, file, row.line, file), "", self.opts)
        return formats.issues_then(check, make(check))

    def _school_of(self, check: Check, org: str | None) -> str | None:
        """The school id a row's schoolSourcedId names; one not in orgs.csv is refused."""
        school = self._school_id(org) if org else None
        if org and school is None:
            check.fail(
                "schoolSourcedId",
                "reference.unknown_school",
                "The school is not among the schools in orgs.csv.",
                vclass="identifier",
            )
        return school

    # --- files -------------------------------------------------------------------------------

    def _org(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        otype = r.get("type", "").strip()
        if otype not in ("school", "district"):
            return ()
        return self._made("orgs.csv", row, lambda check: self._org_record(r, check, district=otype == "district"))

    def _org_record(self, r: dict[str, str], check: Check, *, district: bool) -> pr.SchoolRecord | None:
        sid = check.text("sourcedId", r.get("sourcedId"), required=True)
        name = check.text("name", r.get("name"), max_len=512)
        ident = check.text("identifier", r.get("identifier"), required=self.school_id_from == "identifier")
        parent = check.text("parentSourcedId", r.get("parentSourcedId"))
        if not check.ok or sid is None:
            return None
        if district:
            return _row_record(
                check, pr.SchoolRecord, "org", sid, r, school_id=sid, org_type=pr.OrgType.DISTRICT, name=name
            )
        school_id = ident if self.school_id_from == "identifier" and ident else sid
        self._org_school[sid] = school_id
        return _row_record(
            check, pr.SchoolRecord, "org", sid, r, school_id=school_id, name=name, parent_ref=parent, nces_id=ident
        )

    def _session(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        sid = r.get("sourcedId", "").strip()
        if sid:
            start = self._date(r.get("startDate", "").strip())
            end = self._date(r.get("endDate", "").strip())
            self._sessions[sid] = start
            if (
                r.get("type", "").strip().lower() in TERM_TYPES
                and start is not None
                and end is not None
                and start <= end
                and r.get("status", "") != TOBEDELETED
            ):
                self._terms[sid] = (r.get("title", "").strip() or sid, start, end, row.line)
        return self._made("academicSessions.csv", row, lambda check: self._row_types["academicSessions"](r, check))

    def _course(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        return self._made("courses.csv", row, lambda check: self._row_types["courses"](r, check))

    def _class(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        sid = r.get("sourcedId", "").strip()
        if sid:
            terms = [t.strip() for t in r.get("termSourcedIds", "").split(",") if t.strip()]
            starts = [self._sessions.get(t) for t in terms]
            known = [d for d in starts if d is not None]
            self._classes[sid] = min(known) if known else None
            school = self._school_id(r.get("schoolSourcedId", "").strip())
            if school:
                self._class_school[sid] = school
                for t in terms:
                    self._term_schools.setdefault(t, set()).add(school)
        return self._made("classes.csv", row, lambda check: self._row_types["classes"](r, check))

    @cached_property
    def _row_types(self) -> dict[str, _RowType]:
        """The files whose rows are read by their declared fields alone (courses and classes name
        their schools as this upload's orgs.csv does)."""
        course: tuple[Field | Rule, ...] = (
            _sourced_id("course_id"), Field("title", formats.TITLE),
            Field("orgSourcedId", self._known_org, into="school_id"), _unread(COURSE_KNOWN),
            Field("courseCode", formats.text(), into="course_code"),
            Field("schoolYearSourcedId", formats.text(), into="school_year_id"), *_lists("grades", "subjects"),
        )  # fmt: skip
        class_: tuple[Field | Rule, ...] = (
            _sourced_id("class_id"), Field("title", formats.TITLE),
            Field("schoolSourcedId", self._school_field, into="school_id"),
            Field("classType", _CLASS_TYPE, into="class_type"), _unread(CLASS_KNOWN),
            Field("classCode", formats.text(), into="class_code"),
            Field("courseSourcedId", formats.text(), into="course_id"),
            Field("termSourcedIds", _code_list, into="term_ids"), *_lists("periods", "grades", "subjects"),
            Field("location", formats.text()),
        )  # fmt: skip
        return {
            "academicSessions": _SESSION,
            "courses": _RowType("course", pr.CourseRecord, "course_id", course),
            "classes": _RowType("class", pr.ClassRecord, "class_id", class_),
        }

    def _known_org(self, check: Check, name: str, value: object) -> str | None:
        """A course's org: its school when orgs.csv names it (else None: district-wide)."""
        org = check.text(name, value)
        return self._school_id(org) if org and org in self._org_school else None

    def _school_field(self, check: Check, name: str, value: object) -> str | None:
        """A row's required schoolSourcedId, as the id of a school in orgs.csv."""
        return self._school_of(check, check.text(name, value, required=True))

    def _term_calendars(self) -> Iterator[ParseItem]:
        """Each term's weekdays, for the schools whose classes use it (all schools when none
        does): the school days wherever the district sends no calendar of its own."""
        all_schools = set(self._org_school.values())
        for sid, (title, start, end, line) in sorted(self._terms.items()):
            schools = self._term_schools.get(sid) or all_schools
            for school in sorted(schools):
                yield pr.CalendarRecord(
                    source=Source(FORMAT, "academicSessions.csv", line, "academicSessions.csv"),
                    source_record_id=record_id(FORMAT, "term", school, sid),
                    school_id=school,
                    school_year=school_year(start),
                    calendar_source=pr.CalendarSource.TERMS,
                    sessions=(Term(title, start, end),),
                )

    def _role(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        role = r.get("role", "").strip()
        if role in STAFF_ROLES and r.get("status", "") != TOBEDELETED:
            user = r.get("userSourcedId", "").strip()
            if user:
                _role, orgs = self._role_staff.setdefault(user, (role, []))
                org = r.get("orgSourcedId", "").strip()
                if org:
                    orgs.append(org)
        if role == "student" and r.get("status", "") != TOBEDELETED:
            user = r.get("userSourcedId", "").strip()
            if user:
                orgs = self._role_students.setdefault(user, [])
                org = r.get("orgSourcedId", "").strip()
                if org:
                    orgs.append(org)
        return ()

    def _user(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        sid = r.get("sourcedId", "").strip()
        role = r.get("role", "").strip()
        if self.manifest is not None and self.manifest.version == "1.1":
            if role in STAFF_ROLES:
                return self._staff(r, row, role, _codes(r.get("orgSourcedIds", "")))
            if role != "student":
                return ()
            orgs = list(_codes(r.get("orgSourcedIds", "")))
        elif sid in self._role_staff and sid not in self._role_students:
            return self._staff(r, row, *self._role_staff[sid])
        elif sid in self._role_students:
            orgs = self._role_students[sid]
        elif "role" in r and role in STAFF_ROLES:
            return self._staff(r, row, role, _codes(r.get("orgSourcedIds", "")))
        elif "role" in r and role == "student":  # tolerate a 1.1-style column
            orgs = list(_codes(r.get("orgSourcedIds", "")))
        elif self.manifest is not None and self.manifest.mode("roles") == "absent" and sid:
            return (
                RecordWarning(
                    "users.csv",
                    row.line,
                    "",
                    "oneroster.role_unknown",
                    "OneRoster 1.2 gives roles in roles.csv, which this upload lacks; the user was not "
                    "read because it cannot be told whether they are a student.",
                    "",
                ),
            )
        else:
            return ()
        return self._made("users.csv", row, lambda check: self._student_user(r, check, sid, orgs))

    def _student_user(self, r: dict[str, str], check: Check, sid: str, orgs: Sequence[str]) -> pr.StudentRecord | None:
        schools = tuple(s for s in (self._school_id(o) for o in orgs) if s)
        if not sid:
            check.fail("sourcedId", "schema.required", "sourcedId is required but is missing or empty.")
            return None
        check.text("sourcedId", sid)
        deleted = r.get("status", "") == TOBEDELETED
        elements = {} if deleted else self._student_elements(r, check)
        if not check.ok:
            return None
        if not deleted:
            self._students.add(sid)
            for school in schools:
                self.students_by_school.setdefault(school, set()).add(sid)
        return _row_record(check, pr.StudentRecord, "user", sid, r, student_ref=sid, elements=elements, schools=schools)

    def _student_elements(self, r: dict[str, str], check: Check) -> dict[str, str]:
        """A student user's elements, from the columns mapped to them (the rest is dropped)."""
        elements: dict[str, str] = {}
        for column, element, required in (
            ("givenName", "student.first_name", True),
            ("familyName", "student.last_name", True),
            ("middleName", "student.middle_name", False),
            ("identifier", "student.local_id", False),
            ("userMasterIdentifier", "student.state_id", False),
            ("email", "student.email", False),
            ("phone", "student.phone", False),
        ):
            if column in r or required:
                v = check.text(column, r.get(column), required=required)
                if v is not None:
                    elements[element] = v
        sms = check.text("sms", r.get("sms"))
        if sms is not None:
            elements.setdefault("student.phone", sms)
        grades = [g.strip() for g in r.get("grades", "").split(",") if g.strip()]
        if grades:
            code = check.code("grades", grades[0], codes.normalise_grade, accepted=codes.GRADES_ACCEPTED)
            if code is not None:
                elements["enrollment.grade_level"] = code
        self._user_ids(check, r.get("userIds", ""), elements)
        _user_columns(check, r, USER_MAPPED)
        return elements

    def _staff(self, r: dict[str, str], row: _Row, role: str, orgs: Sequence[str]) -> Sequence[ParseItem]:
        return self._made("users.csv", row, lambda check: self._staff_user(r, check, role, orgs))

    def _staff_user(self, r: dict[str, str], check: Check, role: str, orgs: Sequence[str]) -> pr.StaffRecord | None:
        """A staff user: only the catalogue's staff elements are kept; everything else is dropped
        (credentials unread), and a Social Security number refuses the row as for a student."""
        sid = check.text("sourcedId", r.get("sourcedId"), required=True)
        schools = tuple(s for s in (self._school_id(o) for o in orgs) if s)
        deleted = r.get("status", "") == TOBEDELETED
        elements: dict[str, str] = {}
        for column, element in STAFF_COLUMNS.items():
            required = column in ("givenName", "familyName") and not deleted
            v = check.text(column, r.get(column), required=required)
            if v is not None and not deleted:
                elements[element] = v
        for system, _value in _USER_IDS.findall(r.get("userIds", "")):
            if is_ssn_system(system) or is_ssn_field(system):
                check.fail("userIds", "ssn.forbidden", SSN_MESSAGE, vclass="identification code")
        _user_columns(check, r, STAFF_MAPPED)
        if sid is None or not check.ok:
            return None
        return _row_record(
            check, pr.StaffRecord, "staff", sid, r, staff_ref=sid, role=role, schools=schools, elements=elements
        )

    def _user_ids(self, check: Check, raw: str, elements: dict[str, str]) -> None:
        if not raw.strip():
            return
        for system, value in _USER_IDS.findall(raw):
            if is_ssn_system(system) or is_ssn_field(system):
                check.fail("userIds", "ssn.forbidden", SSN_MESSAGE, vclass="identification code")
                return
            v = check.text("userIds", value)
            element = codes.id_system_element(system)
            if v is not None and element is not None:
                elements.setdefault(element, v)

    def _demographics(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        r = dict(zip(header, row.cells, strict=True))
        sid = r.get("sourcedId", "").strip()
        users_absent = self.manifest is not None and self.manifest.mode("users") == "absent"
        if sid not in self._students and not (users_absent and sid in self._role_students):
            return ()  # not a student read from this upload (or refused there): never read
        if r.get("status", "") == TOBEDELETED:
            return ()
        return self._made("demographics.csv", row, lambda check: _demographics_record(r, check, sid))

    def _enrollment(self, header: list[str], row: _Row, mode: str) -> Iterable[ParseItem]:
        cells = row.cells
        idx = self._enrollment_index(header)
        role = cells[idx["role"]].strip()
        if role in STAFF_ROLES:
            return self._careful(header, row, self._teaching_record)
        if role != "student":
            return ()
        joined = "\x1f".join(cells)
        sid = cells[idx["sourcedId"]]
        cls = cells[idx["classSourcedId"]]
        org = cells[idx["schoolSourcedId"]]
        user = cells[idx["userSourcedId"]]
        begin = cells[idx["beginDate"]] if "beginDate" in idx else ""
        end = cells[idx["endDate"]] if "endDate" in idx else ""
        status = cells[idx["status"]] if "status" in idx else ""
        limit = self.opts.max_text_length
        fast = (
            sid
            and cls
            and org
            and user
            and not _suspicious(joined)
            and len(sid) <= limit
            and len(cls) <= limit
            and len(org) <= limit
            and len(user) <= limit
            and not self._credential_columns(header)
        )
        begin_d = self._date(begin) if begin else None
        end_d = self._date(end) if end else None
        school = self._school_id(org) if org else None
        known_class = cls in self._classes
        class_checked = self.manifest is not None and self.manifest.mode("classes") == "bulk"
        if (
            not fast
            or (begin and begin_d is None)
            or (end and end_d is None)
            or school is None
            or (class_checked and not known_class)
        ):
            return self._careful(header, row, self._enrollment_record)
        src = Source(FORMAT, "enrollments.csv", row.line, "enrollments.csv")
        deleted = status == TOBEDELETED
        modified = cells[idx["dateLastModified"]] if deleted and "dateLastModified" in idx else ""
        record = self._student_in_class(src, sid, user, school, cls, begin_d, end_d, deleted, modified)
        extra = tuple(header[i] for i in self._extra_columns(header) if cells[i].strip())
        if extra:  # metadata.* and vendor columns: dropped, named in the report (screened above)
            return Dropped("enrollments.csv", row.line, extra), record
        return (record,)

    def _enrollment_row(self, r: dict[str, str], check: Check) -> _Enrollment:
        """An enrollments.csv row read on the careful path: its identifying cells and dates."""
        return _Enrollment(
            sid=check.text("sourcedId", r.get("sourcedId"), required=True),
            cls=check.text("classSourcedId", r.get("classSourcedId"), required=True),
            org=check.text("schoolSourcedId", r.get("schoolSourcedId"), required=True),
            user=check.text("userSourcedId", r.get("userSourcedId"), required=True),
            begin=check.date("beginDate", r.get("beginDate")),
            end=check.date("endDate", r.get("endDate")),
        )

    def _enrollment_school(self, check: Check, r: dict[str, str], e: _Enrollment) -> str | None:
        """Drops the columns Homeroom does not read; the row's school, refusing an unknown
        school or (in a bulk classes file) an unknown class."""
        _drop_unread(check, r, ENROLLMENT_KNOWN)
        school = self._school_of(check, e.org)
        class_checked = self.manifest is not None and self.manifest.mode("classes") == "bulk"
        if e.cls and class_checked and e.cls not in self._classes:
            check.fail(
                "classSourcedId", "reference.unknown_class", "The class is not in classes.csv.", vclass="identifier"
            )
        return school

    def _careful(
        self, header: list[str], row: _Row, make: Callable[[dict[str, str], Check], Made]
    ) -> Sequence[ParseItem]:
        """An enrollments.csv row read on the careful path, cell by cell (``make`` reads it)."""
        r = dict(zip(header, row.cells, strict=True))
        return self._made("enrollments.csv", row, lambda check: make(r, check))

    def _teaching_record(self, r: dict[str, str], check: Check) -> pr.TeachingRecord | None:
        """A staff member's class enrollment (role teacher, aide ...): the careful path only."""
        e = self._enrollment_row(r, check)
        primary = check.boolean("primary", r.get("primary"))
        school = self._enrollment_school(check, r, e)
        if not check.ok or e.sid is None or e.cls is None or e.user is None or school is None:
            return None
        return pr.TeachingRecord(
            source=check.source,
            source_record_id=record_id(FORMAT, "teaching", e.sid),
            staff_ref=e.user,
            class_id=e.cls,
            school_id=school,
            primary=bool(primary),
            begin_date=e.begin,
            end_date=e.end,
            deleted=r.get("status", "") == TOBEDELETED,
        )

    _idx_cache: tuple[list[str], dict[str, int]] | None = None
    _extra_cache: tuple[list[str], tuple[int, ...], bool] | None = None

    def _extra_columns(self, header: list[str]) -> tuple[int, ...]:
        cached = self._extra_cache
        if cached is None or cached[0] is not header:
            extra = tuple(i for i, h in enumerate(header) if h not in ENROLLMENT_KNOWN)
            cached = (header, extra, any(is_credential(header[i]) for i in extra))
            self._extra_cache = cached
        return cached[1]

    def _credential_columns(self, header: list[str]) -> bool:
        """A credential column sends the row down the careful path, where it is dropped unread."""
        self._extra_columns(header)
        assert self._extra_cache is not None
        return self._extra_cache[2]

    def _enrollment_index(self, header: list[str]) -> dict[str, int]:
        cached = self._idx_cache
        if cached is not None and cached[0] is header:
            return cached[1]
        idx = {h: i for i, h in enumerate(header) if h in ENROLLMENT_KNOWN}
        missing = [
            h for h in ("sourcedId", "classSourcedId", "schoolSourcedId", "userSourcedId", "role") if h not in idx
        ]
        idx["unknown"] = int(any(h not in ENROLLMENT_KNOWN for h in header))
        for h in missing:
            idx[h] = -1
        self._idx_cache = (header, idx)
        return idx

    def _enrollment_record(self, r: dict[str, str], check: Check) -> pr.EnrollmentRecord | None:
        """The careful path: every field through Check, with a precise error for each problem."""
        e = self._enrollment_row(r, check)
        modified = check.text("dateLastModified", r.get("dateLastModified"))
        check.text("status", r.get("status"))
        check.text("primary", r.get("primary"))
        school = self._enrollment_school(check, r, e)
        if not check.ok or e.sid is None or e.user is None or school is None:
            return None
        deleted = r.get("status", "") == TOBEDELETED
        return self._student_in_class(
            check.source, e.sid, e.user, school, e.cls, e.begin, e.end, deleted, modified or ""
        )

    def _student_in_class(
        self,
        src: Source,
        sid: str,
        user: str,
        school: str,
        cls: str | None,
        begin: date | None,
        end: date | None,
        deleted: bool,
        modified: str,
    ) -> pr.EnrollmentRecord:
        """A student's class enrollment, from either path: a ``tobedeleted`` row withdraws it on
        its end date (else the day it was last modified); any other row enrolls from its begin
        date, else the first day of the class's first term."""
        # The constructor written out, not formats.in_class: this is OneRoster's hot path (a million
        # rows in bench/ingest_parse.py), where the extra call cost 0.1-0.2 µs a row.
        return pr.EnrollmentRecord(
            source=src,
            source_record_id=record_id(FORMAT, "enrollment", sid),
            action=pr.EnrollmentAction.WITHDRAW if deleted else pr.EnrollmentAction.ENROLL,
            student_ref=user,
            school_id=school,
            entry_date=begin if deleted else (begin or self._classes.get(cls or "")),
            exit_date=(end or (self._date(modified[:10]) if modified else None)) if deleted else end,
            class_ref=cls,
        )


R = TypeVar("R")


def _row_record(
    check: Check, record: Callable[..., R], kind: str, key: str, r: Mapping[str, str], /, **values: Any
) -> R:
    """What a row makes: ``record`` from where it came from, its id (``kind`` and ``key``,
    the row's sourcedId), whether the row is to be deleted and the ``values`` read."""
    deleted = r.get("status", "") == TOBEDELETED
    return record(source=check.source, source_record_id=record_id(FORMAT, kind, key), deleted=deleted, **values)


def _sourced_id(into: str) -> Field:
    """The row's required sourcedId, as the record's id for it."""
    return Field("sourcedId", formats.text(required=True), into=into)


def _code_list(check: Check, name: str, value: object) -> tuple[str, ...]:
    return _codes(value if isinstance(value, str) else "")


def _lists(*names: str) -> tuple[Field, ...]:
    """List cells (comma separated codes) that fill the record's fields of the same names."""
    return tuple(Field(name, _code_list) for name in names)


def _unread(known: frozenset[str]) -> Rule:
    """The rule that columns not ``known`` are dropped unread (see ``_drop_unread``)."""

    def rule(check: Check, row: Mapping[str, Any], _values: dict[str, Any]) -> None:
        _drop_unread(check, row, known)

    return rule


def _four_digit_year(check: Check, name: str, value: object) -> int | None:
    text = check.text(name, value)
    year = int(text) if text and text.isdecimal() and len(text) == 4 else None  # isdigit() takes ², which int() refuses
    if text and year is None:
        check.fail(name, "schema.type", f"{name} must be a four-digit year.", text)
    return year


def _year_of_end(check: Check, row: Mapping[str, Any], values: dict[str, Any]) -> None:
    """A session without a schoolYear belongs to the school year its end date falls in (the year it ends)."""
    if values["school_year"] is None and values["end_date"] is not None:
        values["school_year"] = school_year(values["end_date"]) + 1


@dataclass(frozen=True, slots=True)
class _RowType:
    """A file whose rows are read by their declared fields alone: the record each row makes, its
    id's kind, the record field the row's sourcedId fills, and the fields and rules in the order
    they are read. Called as a row parser (``OneRosterUpload._made``)."""

    kind: str
    record: Callable[..., pr.ParsedRecord]
    key: str
    fields: tuple[Field | Rule, ...]

    def __call__(self, r: dict[str, str], check: Check) -> pr.ParsedRecord | None:
        values = check.read(r, self.fields)
        if not check.ok:
            return None
        return _row_record(check, self.record, self.kind, values[self.key], r, **values)


_SESSION = _RowType("session", pr.SessionRecord, "session_id", (
    _sourced_id("session_id"),
    Field("title", formats.TITLE),
    Field("type", formats.one_of(SESSION_TYPES, f"type must be one of {', '.join(SESSION_TYPES.values())}.",
                                 required=True, fold=str.lower), into="session_type"),
    Field("startDate", formats.day(required=True), into="start_date"),
    Field("endDate", formats.day(required=True), into="end_date"),
    formats.ends_after("start_date", "end_date", "The session ends before it begins.", name="endDate", vclass="date"),
    Field("schoolYear", _four_digit_year, into="school_year"),
    Field("parentSourcedId", formats.text(), into="parent_id"),
    _year_of_end,
))  # fmt: skip
_CLASS_TYPE = formats.one_of(
    {"homeroom": "homeroom", "scheduled": "scheduled"},
    "classType must be homeroom or scheduled.",
    default="scheduled",
    fold=str.lower,
)


@dataclass(frozen=True, slots=True)
class _Enrollment:
    """The cells every enrollments.csv row is read for (None: missing or refused)."""

    sid: str | None
    cls: str | None
    org: str | None
    user: str | None
    begin: date | None
    end: date | None


def _drop_unread(check: Check, r: Mapping[str, str], known: frozenset[str]) -> None:
    """Columns Homeroom does not read: screened and counted by name, never kept (a credential
    column is not even screened)."""
    for column, value in r.items():
        if column not in known:
            check.drop(column, value, credential=is_credential(column))


def _demographics_record(r: dict[str, str], check: Check, sid: str) -> pr.StudentRecord:
    """A student's demographics.csv row: a partial student record (birth date, sex, race and
    ethnicity); other columns are dropped (credentials unread)."""
    elements: dict[str, str] = {}
    birth = check.date("birthDate", r.get("birthDate"))
    if birth is not None:
        elements["student.birth_date"] = birth.isoformat()
    sex = check.code("sex", r.get("sex"), codes.normalise_sex, accepted=codes.SEX_ACCEPTED)
    if sex is not None:
        elements["student.sex"] = sex
    races: set[str] = set()
    for column, code in RACE_COLUMNS.items():
        if check.boolean(column, r.get(column)):
            races.add(code)
    if races:
        elements["student.race_ethnicity"] = codes.join_codes(races)
    for column, value in r.items():
        if column not in DEMOGRAPHIC_KNOWN:
            check.drop(column, value, credential=is_credential(column))
        elif column in ("sourcedId", "dateLastModified", "status"):
            check.text(column, value)
    return _row_record(check, pr.StudentRecord, "demographics", sid, r, student_ref=sid, elements=elements)


def _user_columns(check: Check, r: dict[str, str], mapped: frozenset[str]) -> None:
    """A users.csv row's other columns: bookkeeping is read for structure (and screened), never
    kept; a column not ``mapped`` is dropped (a credential column unread)."""
    for column, value in r.items():
        if column in USER_BOOKKEEPING:
            if value and not check.forbid_ssn_field(column, value):
                check.text(column, value, max_len=4096)
        elif column not in mapped:
            check.drop(column, value, credential=is_credential(column))


def _codes(raw: str) -> tuple[str, ...]:
    """A OneRoster list cell (comma separated), in order, without blanks or repeats."""
    return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def parse_oneroster(
    stream: IO[bytes],
    *,
    file: str = "oneroster.zip",
    opts: ParseOptions = DEFAULT_OPTIONS,
    school_id_from: Literal["sourcedId", "identifier"] = "sourcedId",
) -> Iterator[ParseItem]:
    """Yield records, errors and warnings from a OneRoster CSV zip, file by file, row by row."""
    return iter(OneRosterUpload(stream, file=file, opts=opts, school_id_from=school_id_from))


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError):
        return False


def _tell(stream: IO[bytes]) -> int:
    with contextlib.suppress(OSError, ValueError):
        return stream.tell()
    return 0


__all__ = ["Manifest", "OneRosterUpload", "parse_oneroster"]
