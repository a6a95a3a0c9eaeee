"""The Ed Law 2-d page importer, against the real NYC DOE page (seed 003) and broken copies of it."""

from __future__ import annotations

import os
import random
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.consent.agreements import (
    Agreement,
    AgreementCategory,
    AgreementStatus,
    Disposition,
    validate_activation,
)
from services.consent.import_2d import (
    ImportResult,
    agreement_id,
    import_2d_file,
    parse_2d,
    parse_term_dates,
)

SEED_NAME = "003_0bd684370ade645f.txt"
WHEN = datetime(2024, 9, 1, 9, tzinfo=UTC)


def _seed_path() -> Path | None:
    candidates = [
        Path(os.environ.get("HOMEROOM_SEEDS", "/nonexistent")) / SEED_NAME,
        Path(__file__).resolve().parents[3] / "seeds" / SEED_NAME,
        Path("/work/shared/seeds") / SEED_NAME,
    ]
    return next((p for p in candidates if p.is_file()), None)


@pytest.fixture(scope="module")
def seed_path() -> Path:
    path = _seed_path()
    if path is None:
        pytest.skip(f"seed {SEED_NAME} not found (set HOMEROOM_SEEDS to its directory)")
    return path


@pytest.fixture(scope="module")
def seed_text(seed_path: Path) -> str:
    return seed_path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed(seed_path: Path) -> ImportResult:
    return import_2d_file(seed_path, recorded_by="importer@test", recorded_at=WHEN, districts=("nyc-doe",))


def parse(text: str) -> ImportResult:
    return parse_2d(text, source_name="page.txt", recorded_by="importer@test", recorded_at=WHEN)


def by_name(result: ImportResult, organization: str) -> Agreement:
    [match] = [a for a in result.agreements if a.organization == organization]
    return match


def squash(text: str) -> str:
    return " ".join(text.split())


def problems_of(result: ImportResult, entry: int) -> dict[str, str]:
    return {p.field: p.message for p in result.problems if p.entry_index == entry}


# ----------------------------------------------------------------- the real page

# Counted independently of the parser: every entry opens with the "exclusive purposes"
# question (one entry leaves it unnumbered). By hand the page lists 3 COVID testing
# labs, 19 vendors and 20 research agreements: 42.
ENTRY_OPENING = re.compile(r"^\s*(?:\d+\.\s*)?The exclusive purposes for which", re.M)
QUESTION_LINE = re.compile(
    r"^\s*(?:\d+\.\s*)?(?:The exclusive purposes|How you will ensure|When the|If and how|Whether the|Where the|"
    r"How the data will be encrypted)",
    re.M,
)


def test_every_entry_on_the_page_becomes_an_agreement(seed: ImportResult, seed_text: str) -> None:
    assert len(ENTRY_OPENING.findall(seed_text)) == 42
    assert len(seed.agreements) == 42
    counts = {c: sum(a.category is c for a in seed.agreements) for c in AgreementCategory}
    assert counts[AgreementCategory.PUBLIC_HEALTH_SERVICE] == 3
    assert counts[AgreementCategory.VENDOR] == 19
    assert counts[AgreementCategory.RESEARCH] == 20


def test_every_question_on_the_page_is_answered_in_some_agreement(seed: ImportResult, seed_text: str) -> None:
    # Vendor-form entries answer six questions, research-form ones five (their storage answer
    # doubles as the encryption answer), so 3*6 + 19*6 + 20*5 = 232 question lines.
    question_lines = len(QUESTION_LINE.findall(seed_text))
    assert question_lines == 232
    answered = 0
    for a in seed.agreements:
        s = a.supplemental
        fields = [s.exclusive_purposes, s.subcontractor_oversight, s.term_and_expiry, s.accuracy_challenge]
        fields.append(s.storage_and_protections)
        if a.category is not AgreementCategory.RESEARCH:
            fields.append(s.encryption)
        answered += sum(1 for f in fields if f)
    assert answered == question_lines


def test_every_answer_line_is_text_from_the_page(seed: ImportResult, seed_text: str) -> None:
    page = squash(seed_text)
    for a in seed.agreements:
        for name, answer in a.supplemental.model_dump().items():
            assert answer, (a.organization, name)
            for line in answer.split("\n"):
                assert line in page, (a.organization, name, line[:80])


def test_imported_agreements_release_nothing(seed: ImportResult) -> None:
    for a in seed.agreements:
        assert a.status is AgreementStatus.DRAFT
        assert a.terms.elements == () and a.terms.purposes == ()
        assert a.terms.districts == ("nyc-doe",)
        rules = {e.rule for e in validate_activation(a, today=date(2024, 9, 1))}
        assert {"activation.no_elements", "activation.no_purposes"} <= rules


def test_sources_name_the_file_and_entry(seed: ImportResult) -> None:
    assert [a.source for a in seed.agreements] == [f"import-2d:{SEED_NAME}#{n}" for n in range(1, 43)]
    assert all(a.recorded_by == "importer@test" and a.recorded_at == WHEN and a.version == 1 for a in seed.agreements)


def test_bioreference_covid_lab(seed: ImportResult) -> None:
    a = by_name(seed, "BioReference Laboratories, Inc.")
    assert a.source.endswith("#1")
    assert a.category is AgreementCategory.PUBLIC_HEALTH_SERVICE
    s = a.supplemental
    assert s.exclusive_purposes.startswith("Protected Information will be used by BioReference Laboratories, Inc.")
    assert s.exclusive_purposes.endswith("with New York City Health and Hospitals Corporation.")
    assert s.subcontractor_oversight.startswith("BRL will not utilize any subcontractors for the testing")
    assert s.term_and_expiry.startswith("This Agreement is effective October 1, 2020")
    assert s.accuracy_challenge.endswith("should be directed to patientportal@bioreference.com.")
    assert s.storage_and_protections == "The Protected Information is stored in the US. Please see question #3 above."
    assert s.encryption == (
        "BRL employs industry standard encryption method and strength for data at rest and in transit."
    )
    assert (a.terms.start_date, a.terms.end_date) == (date(2020, 10, 1), None)
    assert a.terms.storage_region == "US"


def test_dreambox_answer_on_the_line_after_its_question(seed: ImportResult) -> None:
    a = by_name(seed, "DreamBox Learning, Inc.")
    assert a.category is AgreementCategory.VENDOR
    s = a.supplemental
    assert s.exclusive_purposes == "To provide hosted services and adaptive math software to the district."
    assert s.subcontractor_oversight.startswith("DreamBox does not utilize subcontracts")
    # The district's bracketed comment belongs to the answer it follows.
    assert s.term_and_expiry.startswith("Personally Identifiable Student Information (PISI) will be removed")
    assert "[NYC DOE comment: The current agreement became effective starting on October 1, 2019" in s.term_and_expiry
    assert s.accuracy_challenge.endswith("or to studentprivacy@schools.nyc.gov.]")
    assert s.storage_and_protections.startswith("PISI will be store in the US. DreamBox is ISO27001 certified")
    assert s.encryption == "At rest and in transit."
    assert a.terms.start_date == date(2019, 10, 1) and a.terms.end_date is None
    assert a.terms.disposition is Disposition.RETURN  # "removed ... and returned to the district"


def test_savvas_stated_range(seed: ImportResult) -> None:
    a = by_name(seed, "Savvas Learning Company LLC (f/k/a Pearson)")
    assert a.supplemental.term_and_expiry.startswith("March 1, 2019 to June 30, 2024.")
    assert (a.terms.start_date, a.terms.end_date) == (date(2019, 3, 1), date(2024, 6, 30))
    assert a.terms.disposition is Disposition.DESTROY


def test_mcgraw_hill_unnumbered_question_and_numbered_answer(seed: ImportResult) -> None:
    a = by_name(seed, "McGraw Hill LLC")
    assert a.supplemental.exclusive_purposes.startswith("Processor will use PII to provide the requested service")
    assert a.supplemental.exclusive_purposes.endswith("in order to maintain and/or improve our services.")
    assert a.supplemental.subcontractor_oversight.startswith("Processor requires any and all subcontractors")
    assert a.terms.start_date == date(2020, 8, 3)


def test_everbridge_bullets_stay_in_the_term_answer(seed: ImportResult) -> None:
    a = by_name(seed, "Everbridge, Inc.")
    term = a.supplemental.term_and_expiry
    assert term.count("\n• ") == 5
    assert "Business records are kept by Everbridge for 7 years" in term
    assert a.terms.start_date == date(2020, 3, 19)
    assert a.supplemental.accuracy_challenge.startswith("Clients are wholly responsible")
    # Four regions on three continents: no single storage region can be read from that.
    assert a.terms.storage_region is None


def test_cuny_research_agreement(seed: ImportResult) -> None:
    a = by_name(seed, "City University of New York (CUNY) Data Sharing")
    assert a.category is AgreementCategory.RESEARCH
    s = a.supplemental
    assert s.exclusive_purposes.startswith("The course and exam data provided by the DOE will serve")
    # A second paragraph, unnumbered, continues question 2.
    assert s.subcontractor_oversight.count("\n") == 1
    assert s.subcontractor_oversight.split("\n")[1].startswith("Access to the Research Data Set will be limited")
    assert s.term_and_expiry.startswith("This agreement expires on December 31, 2028.")
    assert s.accuracy_challenge.startswith("Pursuant to its obligations in its Memorandum of Understanding")
    assert s.storage_and_protections.endswith("The data is encrypted during transmission.")
    assert s.encryption == s.storage_and_protections  # the research form asks both in question 5
    assert (a.terms.start_date, a.terms.end_date) == (date(2019, 5, 21), date(2028, 12, 31))
    assert problems_of(seed, int(a.source.rsplit("#", 1)[1])) == {}


def test_measurement_incorporated_month_end(seed: ImportResult) -> None:
    a = by_name(seed, "Measurement Incorporated")
    # "The agreement expires December 2021": the last day of that month.
    assert (a.terms.start_date, a.terms.end_date) == (date(2020, 7, 7), date(2021, 12, 31))


def test_lg_research_2_wrapped_answers(seed: ImportResult) -> None:
    a = by_name(seed, "L&G Research and Evaluation 2")
    assert a.supplemental.exclusive_purposes.split("\n")[1].startswith("Programming impacted students")
    challenge = a.supplemental.accuracy_challenge
    assert "L&G Research and Evaluation Consulting, Inc. will work with the NYC DOE" in challenge


def test_powermylearning_vendor_and_research_entries_stay_apart(seed: ImportResult) -> None:
    vendor = by_name(seed, "PowerMyLearning, Inc.")
    research = by_name(seed, "PowerMyLearning")
    assert (vendor.category, research.category) == (AgreementCategory.VENDOR, AgreementCategory.RESEARCH)
    assert vendor.id != research.id
    assert vendor.terms.start_date == date(2019, 8, 19) and research.terms.start_date == date(2019, 1, 31)


# Every problem the page has, by (entry, field). Each was checked against the text.
SEED_PROBLEMS = {
    (7, "/terms/start_date"),  # Suntex: no date anywhere
    (19, "/terms/end_date"),  # The Sparkler: "will extend no more than a year"
    (23, "/supplemental/encryption"),  # AIR: the storage answer says nothing about encryption
    (24, "/supplemental/encryption"),  # AIR 2
    (26, "/terms/end_date"),  # CUNY REPS: "not to exceed five years from date of receipt"
    (27, "/supplemental/encryption"),  # ExpandED Schools
    (27, "/terms/end_date"),  # ExpandED Schools: "not to exceed seven years"
    (29, "/supplemental/encryption"),  # Fordham
    (30, "/supplemental/encryption"),  # Impact Development & Assessment
    (31, "/supplemental/encryption"),  # Impact Development & Assessment 2
    (35, "/supplemental/encryption"),  # Long Island University
    (36, "/terms/end_date"),  # Mathematica: "anticipated to end in 2030"
}


def test_seed_problems_name_entry_and_field(seed: ImportResult) -> None:
    assert {(p.entry_index, p.field) for p in seed.problems} == SEED_PROBLEMS
    assert len(seed.problems) == len(SEED_PROBLEMS)
    names = {a.source.rsplit("#", 1)[1]: a.organization for a in seed.agreements}
    for p in seed.problems:
        assert p.organization == names[str(p.entry_index)]
    suntex = problems_of(seed, 7)["/terms/start_date"]
    assert "no start date" in suntex
    assert "'end in 2030'" in problems_of(seed, 36)["/terms/end_date"]


def test_reimport_is_idempotent(seed_text: str) -> None:
    first = parse(seed_text)
    again = parse_2d(seed_text, source_name="page.txt", recorded_by="someone-else", recorded_at=datetime.now(UTC))
    assert [a.id for a in first.agreements] == [a.id for a in again.agreements]
    assert first.digests == again.digests
    assert len({a.id for a in first.agreements}) == 42


def test_edited_entry_keeps_its_id_but_not_its_digest(seed_text: str) -> None:
    before = parse(seed_text)
    edited = parse(seed_text.replace("At rest and in transit.", "AES-256 at rest, TLS 1.3 in transit.", 1))
    assert [a.id for a in before.agreements] == [a.id for a in edited.agreements]
    dreambox = by_name(before, "DreamBox Learning, Inc.").id
    changed = {i for i in before.digests if before.digests[i] != edited.digests[i]}
    assert changed == {dreambox}


def test_ids_are_slugs_with_a_short_hash() -> None:
    assert re.fullmatch(r"l-g-research-and-evaluation-[0-9a-f]{8}", agreement_id("L&G Research and Evaluation"))
    assert agreement_id("Acme  Inc.") == agreement_id("acme inc.")
    assert agreement_id("Acme Inc.", 2) != agreement_id("Acme Inc.")


# ------------------------------------------------------------------ broken pages

ENTRY = """{name}

  1. The exclusive purposes for which Protected Information will be used: {purpose}
  2. How you will ensure that the subcontractors or other authorized persons will abide by data protection and security requirements: Contracts.
  3. When the non-disclosure agreement with the NYC DOE starts and ends and what happens to Protected Information upon expiration of the agreement: {term}
  4. If and how a parent, student, eligible student, teacher or principal may challenge the accuracy of the student data: Ask the school.
  5. Whether the Protected Information will be stored in the US or outside of the US, and the security protections taken: Stored in the US.
  6. How the data will be encrypted (described in such a manner as to protect data security): AES-256.
"""  # noqa: E501


def entry(name: str, purpose: str = "Math practice.", term: str = "Effective July 1, 2020.") -> str:
    return ENTRY.format(name=name, purpose=purpose, term=term)


def page(*entries: str, section: str = "Vendors") -> str:
    return "Supplemental Information for Parents\n\nAn introduction.\n\n" + f"{section}\n\n" + "\n".join(entries)


def test_empty_and_blank_files_report_one_problem() -> None:
    for text in ("", "\n\n   \n"):
        result = parse(text)
        assert result.agreements == []
        [problem] = result.problems
        assert problem.entry_index is None and "No agreements were found in page.txt" in problem.message


def test_binary_junk_is_reported_not_parsed(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(random.Random(3).randbytes(8192))
    result = import_2d_file(junk, recorded_by="importer@test", recorded_at=WHEN)
    assert result.agreements == []
    [problem] = result.problems
    assert "junk.bin is not a text page" in problem.message


def test_text_without_any_questions_imports_nothing() -> None:
    result = parse("Minutes of the board meeting\n\nShort line\n\nAnother short line\n\nA paragraph of prose.")
    assert result.agreements == []
    assert len(result.problems) == 1


def test_truncated_page_keeps_the_entry_it_cut(seed_text: str) -> None:
    cut = seed_text.index("not utilize subcontracts in its delivery")  # inside DreamBox's question 2
    result = parse(seed_text[:cut])
    assert [a.organization for a in result.agreements][-1] == "DreamBox Learning, Inc."
    assert len(result.agreements) == 4
    dreambox = result.agreements[-1]
    assert dreambox.supplemental.subcontractor_oversight.endswith("DreamBox does")
    assert set(problems_of(result, 4)) == {
        "/supplemental/term_and_expiry",
        "/supplemental/accuracy_challenge",
        "/supplemental/storage_and_protections",
        "/supplemental/encryption",
    }


def test_page_cut_after_a_heading_reports_the_heading(seed_text: str) -> None:
    cut = seed_text.index("Everbridge, Inc.") + len("Everbridge, Inc.")
    result = parse(seed_text[:cut])
    assert len(result.agreements) == 5
    assert result.agreements[-1].organization == "Everbridge, Inc."
    assert "None of the six questions" in problems_of(result, 5)["/supplemental"]


def test_page_cut_after_a_section_name_adds_no_agreement(seed_text: str) -> None:
    cut = seed_text.index("\nVendors\n") + len("\nVendors\n")
    result = parse(seed_text[:cut])
    assert [a.category for a in result.agreements] == [AgreementCategory.PUBLIC_HEALTH_SERVICE] * 3
    assert result.problems == []


def test_entry_with_missing_sections_is_imported_with_a_problem_per_missing_answer() -> None:
    broken = "\n".join(
        line for line in entry("Acme Learning").split("\n") if not line.lstrip().startswith(("2.", "5."))
    )
    result = parse(page(broken, entry("Beta Math")))
    assert [a.organization for a in result.agreements] == ["Acme Learning", "Beta Math"]
    acme = result.agreements[0]
    assert acme.supplemental.subcontractor_oversight == "" and acme.supplemental.storage_and_protections == ""
    assert acme.supplemental.encryption == "AES-256."
    missing = {"/supplemental/subcontractor_oversight", "/supplemental/storage_and_protections"}
    assert set(problems_of(result, 1)) == missing
    assert problems_of(result, 2) == {}


def test_entry_missing_its_first_question_keeps_its_name() -> None:
    no_purposes = "\n".join(line for line in entry("Beta Math").split("\n") if not line.lstrip().startswith("1."))
    result = parse(page(entry("Acme Learning"), no_purposes))
    assert [a.organization for a in result.agreements] == ["Acme Learning", "Beta Math"]
    assert set(problems_of(result, 2)) == {"/supplemental/exclusive_purposes"}
    assert problems_of(result, 1) == {}


def test_storage_region_is_read_only_when_the_answer_names_the_us_alone() -> None:
    us_only = parse(page(entry("Acme Learning")))
    assert us_only.agreements[0].terms.storage_region == "US"
    both = entry("Acme Learning").replace("Stored in the US.", "Data is stored in the US and in Canada.")
    assert parse(page(both)).agreements[0].terms.storage_region is None


def test_empty_answer_is_reported() -> None:
    result = parse(page(entry("Acme Learning", purpose="")))
    assert "is empty" in problems_of(result, 1)["/supplemental/exclusive_purposes"]


def test_entries_without_a_heading_are_not_merged() -> None:
    two = entry("Acme Learning") + "\n" + "\n".join(entry("ignored").split("\n")[2:])
    result = parse(page(two))
    assert len(result.agreements) == 2
    unnamed = result.agreements[1]
    assert unnamed.organization == "Unnamed organisation (entry 2)"
    assert "No organisation heading" in problems_of(result, 2)["/organization"]


@pytest.mark.parametrize(
    ("term", "field", "words"),
    [
        ("Effective starting on Febtober 45, 20X9.", "/terms/start_date", "not a date"),
        ("Effective starting on February 30, 2020.", "/terms/start_date", "not a calendar date"),
        ("This agreement is effective 13/45/2020.", "/terms/start_date", "not a calendar date"),
        ("Effective for the 2020-2023 school year.", "/terms/start_date", "not a school year"),
        ("We keep data safe.", "/terms/start_date", "no start date"),
    ],
)
def test_garbage_dates_are_reported_and_the_entry_still_imported(term: str, field: str, words: str) -> None:
    result = parse(page(entry("Acme Learning", term=term)))
    [acme] = result.agreements
    assert acme.terms.start_date is None and acme.supplemental.term_and_expiry == term
    assert words in problems_of(result, 1)[field]


def test_stated_end_before_start_is_reported_with_the_rule() -> None:
    term = "This agreement expires on June 30, 2019. [NYC DOE comment: effective starting on July 1, 2020.]"
    result = parse(page(entry("Acme Learning", term=term)))
    assert "[dates.end_before_start]" in problems_of(result, 1)["/terms/end_date"]


def test_duplicate_entries_get_their_own_ids_and_a_problem() -> None:
    result = parse(page(entry("Acme Learning"), entry("Acme Learning", purpose="Reading.")))
    first, second = result.agreements
    assert first.id != second.id
    assert "appears 2 times" in problems_of(result, 2)["/organization"]


def test_section_decides_the_category_and_no_section_means_vendor() -> None:
    research = parse(page(entry("Study Group"), section="Research"))
    assert research.agreements[0].category is AgreementCategory.RESEARCH
    assert research.problems == []
    health = parse(page(entry("Lab Co"), section="COVID-19 Testing"))
    assert health.agreements[0].category is AgreementCategory.PUBLIC_HEALTH_SERVICE
    quiet = parse(entry("Acme Learning"))
    assert quiet.agreements[0].category is AgreementCategory.VENDOR and quiet.problems == []


def test_inferred_vendor_is_reported_when_the_text_says_research() -> None:
    result = parse(entry("Acme Analytics", purpose="An evaluation study of the reading programme."))
    assert result.agreements[0].category is AgreementCategory.VENDOR
    assert "suggests research" in problems_of(result, 1)["/category"]


def test_text_outside_any_entry_is_reported() -> None:
    result = parse(page(entry("Acme Learning")) + "\nResearch\n\nThese partners study outcomes for the district.\n")
    [problem] = result.problems
    assert problem.entry_index is None and "outside any entry" in problem.message


def test_a_heading_with_nothing_under_it_between_entries_is_still_an_entry() -> None:
    result = parse(page(entry("Acme Learning"), "Gamma Garbled Corp\n", entry("Beta Math")))
    assert [a.organization for a in result.agreements] == ["Acme Learning", "Gamma Garbled Corp", "Beta Math"]
    assert "None of the six questions" in problems_of(result, 2)["/supplemental"]


# ----------------------------------------------------------------- term dates


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("Effective July 1, 2020.", date(2020, 7, 1), None),
        ("The agreement runs 7/1/2020 through 6/30/2023.", date(2020, 7, 1), date(2023, 6, 30)),
        ("For the 2020-2021 school year.", date(2020, 7, 1), date(2021, 6, 30)),
        ("Signed May 3, 2021; runs through June 30, 2023.", date(2021, 5, 3), date(2023, 6, 30)),
        ("Effective 1st July 2020 until the 2022-23 school year.", date(2020, 7, 1), date(2023, 6, 30)),
        ("Begins 2020-07-01 and ends 2021-06-30.", date(2020, 7, 1), date(2021, 6, 30)),
        ("Effective Sept. 8, 2021; expires December 2022.", date(2021, 9, 8), date(2022, 12, 31)),
        ("March 1, 2019 to June 30, 2024.", date(2019, 3, 1), date(2024, 6, 30)),
    ],
)
def test_term_dates_in_the_forms_the_page_uses(text: str, start: date, end: date | None) -> None:
    parsed = parse_term_dates(text)
    assert (parsed.start, parsed.end) == (start, end)
    assert parsed.problems == []


def test_the_districts_note_wins_over_the_recipients_text() -> None:
    parsed = parse_term_dates(
        "The agreement starts on June 1, 2020. [NYC DOE comment: The current agreement became effective starting on "
        "July 15, 2020.]"
    )
    assert parsed.start == date(2020, 7, 15)
    assert parsed.problems == [
        ("/terms/start_date", "The term states several start dates (2020-06-01, 2020-07-15); used 2020-07-15.")
    ]


def test_a_date_with_no_role_is_reported_not_guessed() -> None:
    parsed = parse_term_dates("Our policy of January 5, 2019 applies.")
    assert parsed.start is None and parsed.end is None
    assert "without saying whether" in parsed.problems[0][1]


# --------------------------------------------------------------- never raises


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=3000))
def test_any_text_is_parsed_without_raising(text: str) -> None:
    result = parse(text)
    assert all(a.status is AgreementStatus.DRAFT and a.terms.elements == () for a in result.agreements)
    assert result.agreements or result.problems


@pytest.fixture(scope="module")
def seed_lines(seed_text: str) -> list[str]:
    return seed_text.split("\n")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_shuffled_and_dropped_seed_lines_never_raise(seed_lines: list[str], data: st.DataObject) -> None:
    # Real page lines in broken orders: questions without headings, headings without
    # questions, notes out of place. Every entry found is still a draft with its source.
    lines = data.draw(st.lists(st.sampled_from(seed_lines), max_size=120))
    result = parse("\n".join(lines))
    assert len({a.source for a in result.agreements}) == len(result.agreements)
    assert all(a.status is AgreementStatus.DRAFT and a.terms.purposes == () for a in result.agreements)
    indexes = {p.entry_index for p in result.problems} - {None}
    assert indexes <= set(range(1, len(result.agreements) + 1))
