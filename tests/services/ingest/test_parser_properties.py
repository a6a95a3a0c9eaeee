"""Property tests for the OneRoster, Ed-Fi JSON and Ed-Fi XML parsers (the JSON batch
parser has its own in test_batch.py): whatever arrives, a parser yields records, errors
and warnings and never raises, and every problem says where (file, line, field) and why
(rule). Derandomised, so every run tries the same inputs."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.formats.edfi_json import parse_edfi_json
from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.formats.oneroster_csv import parse_oneroster
from services.ingest.parsed_records import Issue, ParseItem
from tests.services.ingest.ingest_data import USERS_11, enrollment, make_zip, manifest, oneroster_zip, user11
from tests.services.ingest.test_edfi_json import STUDENT
from tests.services.ingest.test_edfi_xml import STUDENTS

PROPERTIES = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# CSV's own syntax (separators, quotes, line ends), NUL, non-ASCII and lone surrogates' neighbours.
CELL = st.text(alphabet=st.sampled_from(list(",\"\n\r\x00 ;\t'\\-:T0123456789abzé€😀")), max_size=24)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=24,
)


def explained(items: list[ParseItem]) -> None:
    for item in items:
        if isinstance(item, Issue):
            assert item.rule and item.file and item.message, item
            assert item.line >= 0, item


@PROPERTIES
@given(st.dictionaries(st.sampled_from(USERS_11), CELL, max_size=8))
def test_oneroster_user_rows_with_any_cells_never_raise(cells: dict[str, str]) -> None:
    data = oneroster_zip([user11("s-1", **cells), user11("s-2")], [enrollment("e-1", "s-1"), enrollment("e-2", "s-2")])
    explained(list(parse_oneroster(io.BytesIO(data))))


@PROPERTIES
@given(
    st.dictionaries(
        st.sampled_from(["users.csv", "orgs.csv", "enrollments.csv", "roles.csv", "classes.csv", "../../etc/passwd"]),
        st.one_of(CELL.map(str.encode), st.binary(max_size=200)),
        max_size=5,
    ),
    st.sampled_from(["1.1", "1.2"]),
)
def test_oneroster_zips_of_any_members_never_raise(members: dict[str, bytes], version: str) -> None:
    files: dict[str, str | bytes] = {"manifest.csv": manifest(version, users="bulk", orgs="bulk"), **members}
    explained(list(parse_oneroster(io.BytesIO(make_zip(files)))))


@PROPERTIES
@given(st.binary(max_size=400))
def test_oneroster_any_bytes_never_raise(raw: bytes) -> None:
    explained(list(parse_oneroster(io.BytesIO(raw))))


@PROPERTIES
@given(
    st.sampled_from(["students", "studentSchoolAssociations", "studentSchoolAttendanceEvents"]),
    st.one_of(
        st.lists(JSON_VALUE, max_size=3),
        st.dictionaries(st.sampled_from(sorted(STUDENT)), JSON_VALUE, max_size=6).map(lambda d: [{**STUDENT, **d}]),
    ),
)
def test_edfi_json_resources_of_any_shape_never_raise(resource: str, body: Any) -> None:
    explained(list(parse_edfi_json(io.BytesIO(json.dumps(body).encode()), resource=resource)))


@PROPERTIES
@given(st.integers(0, len(STUDENTS)), st.binary(max_size=40), st.integers(0, 60))
def test_edfi_xml_spliced_truncated_or_corrupted_never_raises(at: int, inserted: bytes, cut: int) -> None:
    data = STUDENTS.encode()
    spliced = data[:at] + inserted + data[at + cut :]
    explained(list(parse_edfi_xml(io.BytesIO(spliced))))


@PROPERTIES
@given(st.text(max_size=40))
def test_edfi_xml_any_element_text_never_raises(text: str) -> None:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;")
    document = STUDENTS.replace("<FirstName>Lisa</FirstName>", f"<FirstName>{escaped}</FirstName>")
    document = document.replace("<BirthDate>2010-01-13</BirthDate>", f"<BirthDate>{escaped}</BirthDate>")
    explained(list(parse_edfi_xml(io.BytesIO(document.encode("utf-8", "surrogatepass")))))
