"""Peak memory of ingest's parsers on real-sized district exports, each parse in its own process.

    .venv/bin/python bench/interop_memory.py [--edfi-mb 17.5] [--students 100000] [--per-student 10]

Two inputs are generated once under /tmp (never committed): an Ed-Fi StudentEnrollment
interchange of about 17.5 MB written by the generator to the Data Standard 5.2 schema
(`homeroom_dev.generate.write_edfi_enrollment`, with the standard's optional elements), and a
OneRoster 1.1 export of 100,000 users and 1,000,000 class enrollments. Each is parsed and
validated (parser -> Validator, as an upload is) in a fresh Python process, which reports its
peak resident set size (ru_maxrss). The same-run baseline is a process that imports the same
modules and parses nothing: the difference is what parsing the file costs. Prints a table and
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from homeroom_dev.generate import EdFiEnrollment, edfi_enrollment_records, write_edfi_enrollment  # noqa: E402
from services.ingest.formats.edfi_xml import parse_edfi_xml  # noqa: E402
from services.ingest.formats.oneroster_csv import parse_oneroster  # noqa: E402
from services.ingest.parsed_records import Dropped, ParseItem, RecordError, RecordWarning  # noqa: E402
from services.ingest.validation import Validator  # noqa: E402
from tests.services.ingest.ingest_data import big_oneroster_zip  # noqa: E402

SCHOOLS = [f"2559010{i:02d}" for i in range(20)]


def enrollments(n: int) -> list[EdFiEnrollment]:
    return [EdFiEnrollment(f"6{i:07d}", SCHOOLS[i % len(SCHOOLS)], "2024-08-26", "09") for i in range(n)]


def make_edfi(path: Path, megabytes: float) -> int:
    sample = "".join(edfi_enrollment_records(enrollments(200)))
    n = int(megabytes * 1_000_000 / (len(sample.encode()) / 200))
    return write_edfi_enrollment(path, enrollments(n))


class _OnRecord:
    """Every student counts as on record (the enrollment interchange follows the Student one)."""

    def __contains__(self, _ref: object) -> bool:
        return True


def child(kind: str, path: str) -> None:
    """Parse and validate one file; print records, seconds and this process's peak RSS."""
    start = time.perf_counter()
    records = refused = 0
    if kind != "baseline":
        fmt, _, stage = kind.partition("-")
        with open(path, "rb") as f:
            items: Iterable[ParseItem] = (
                parse_edfi_xml(f, file="StudentEnrollment.xml") if fmt == "edfi" else parse_oneroster(f)
            )
            if stage != "parse":
                validator = Validator(
                    "d-bench",
                    [*SCHOOLS, *(f"sch-{i}" for i in range(20))],
                    date(2025, 6, 1),
                    known_students=_OnRecord() if fmt == "edfi" else None,
                    district_org_ids=["dist-1"],
                )
                items = validator.run(items)
            for item in items:
                if isinstance(item, RecordError):
                    refused += 1
                elif not isinstance(item, RecordWarning | Dropped):
                    records += 1
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"records": records, "refused": refused, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({**out, "peak_rss_mb": round(peak_kb / 1024, 1)}))


def measure(kind: str, path: str) -> dict[str, float]:
    got = subprocess.run(
        [sys.executable, __file__, "--child", kind, path], check=True, capture_output=True, text=True, cwd=ROOT
    )
    result: dict[str, float] = json.loads(got.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edfi-mb", type=float, default=17.5)
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--per-student", type=int, default=10)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"))
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    tmp = Path(tempfile.gettempdir())
    edfi = tmp / f"homeroom-bench-StudentEnrollment-{args.edfi_mb}mb.xml"
    if not edfi.exists():
        make_edfi(edfi, args.edfi_mb)
    zip_path = tmp / f"homeroom-bench-oneroster-{args.students}x{args.per_student}.zip"
    if not zip_path.exists():
        big_oneroster_zip(str(zip_path), args.students, args.per_student)
    baseline = measure("baseline", "-")
    edfi_mb, zip_mb = round(edfi.stat().st_size / 1e6, 1), round(zip_path.stat().st_size / 1e6, 1)
    rows = {
        "edfi_enrollment_parse": {**measure("edfi-parse", str(edfi)), "file_mb": edfi_mb},
        "edfi_enrollment_parse_validate": {**measure("edfi-validate", str(edfi)), "file_mb": edfi_mb},
        "oneroster_parse": {**measure("oneroster-parse", str(zip_path)), "file_mb": zip_mb},
        "oneroster_parse_validate": {**measure("oneroster-validate", str(zip_path)), "file_mb": zip_mb},
    }
    print(f"baseline (imports, no parse): peak RSS {baseline['peak_rss_mb']} MB")
    print(f"{'input':<30} {'file MB':>8} {'records':>9} {'s':>6} {'peak RSS MB':>12} {'over baseline':>14}")
    for name, r in rows.items():
        over = round(r["peak_rss_mb"] - baseline["peak_rss_mb"], 1)
        r["over_baseline_mb"] = over
        print(
            f"{name:<30} {r['file_mb']:>8} {int(r['records']):>9} {r['seconds']:>6} {r['peak_rss_mb']:>12} {over:>14}"
        )
    print(json.dumps({"bench": "interop_memory", "baseline": baseline, **rows, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
