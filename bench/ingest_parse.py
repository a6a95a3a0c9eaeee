"""Ingest parse + validate throughput on a OneRoster 1.1 zip (default: 100,000 students and
1,000,000 class enrollments), with peak Python memory measured by tracemalloc.

    .venv/bin/python bench/ingest_parse.py [--students N] [--per-student K] [--zip PATH] [--no-tracemalloc]
                                           [--batch-students N] [--fingerprints N]

The zip is generated once to /tmp (never committed). Three runs are timed: parse only, parse +
validate, and parse + validate under tracemalloc (tracemalloc slows allocation, so its time is
not the throughput figure; its peak is the memory figure). With ``--batch-students N`` a
Homeroom JSON batch of every student-record type (per student: an enroll with the student
object, attendance marks, a suspension, a school change and a withdrawal) is parsed and
validated too. ``fingerprint`` times ``fingerprint()`` (the content hash the pipeline takes of
every accepted record) over the first ``--fingerprints`` records of each file, against hashing
each record's id alone (the raw BLAKE2b floor) in the same run. Each run prints CPU µs per record
(``time.process_time``: on a shared machine the wall-clock rate is noisy, the process's CPU time
much less so). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.ingest.formats.batch import parse_batch  # noqa: E402
from services.ingest.formats.oneroster_csv import parse_oneroster  # noqa: E402
from services.ingest.parsed_records import Dropped, ParseItem, RecordError, RecordWarning  # noqa: E402
from services.ingest.validation import Validator  # noqa: E402
from tests.services.ingest.ingest_data import big_oneroster_zip  # noqa: E402

SCHOOLS = 20


def run(
    path: str, validate: bool, parse: Callable[[IO[bytes]], Iterator[ParseItem]] = parse_oneroster
) -> dict[str, float | int]:
    accepted = refused = warnings = 0
    start, cpu = time.perf_counter(), time.process_time()
    with open(path, "rb") as f:
        items = parse(f)
        if validate:
            v = Validator(
                "d-bench", {f"sch-{i}" for i in range(SCHOOLS)}, date(2025, 6, 1), district_org_ids=["dist-1"]
            )
            items = v.run(items)
        for item in items:
            if isinstance(item, RecordError):
                refused += 1
            elif isinstance(item, RecordWarning):
                warnings += 1
            else:
                accepted += 1
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    total = accepted + refused
    return {
        "records": total,
        "accepted": accepted,
        "refused": refused,
        "warnings": warnings,
        "seconds": round(seconds, 2),
        "records_per_s": round(total / seconds),
        "cpu_us_per_record": round(cpu_seconds / total * 1e6, 2),
    }


def fingerprints(
    path: str, count: int, parse: Callable[[IO[bytes]], Iterator[ParseItem]] = parse_oneroster
) -> dict[str, float | int]:
    """CPU µs per record of fingerprint(), and of BLAKE2b over the record id alone (the raw floor)."""
    with open(path, "rb") as f:
        parsed = (i for i in parse(f) if not isinstance(i, RecordError | RecordWarning | Dropped))
        records = list(itertools.islice(parsed, count))
    cpu = time.process_time()
    for r in records:
        r.fingerprint()
    fingerprint_s, cpu = time.process_time() - cpu, time.process_time()
    for r in records:
        hashlib.blake2b(r.source_record_id.encode(), digest_size=16).hexdigest()
    raw_s = time.process_time() - cpu
    return {
        "records": len(records),
        "cpu_us_per_record": round(fingerprint_s / len(records) * 1e6, 2),
        "raw_blake2b_us_per_record": round(raw_s / len(records) * 1e6, 2),
        "ratio_to_raw": round(fingerprint_s / raw_s, 2),
    }


def write_batch(path: str, students: int) -> None:
    """Every student-record type of the JSON batch, per student: an enroll carrying the student
    object, eight attendance marks, a suspension, a school change and a withdrawal."""
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"format": "homeroom.batch", "version": 1, "records": [\n')
        for n in range(students):
            sid, school, other = f"S{n:07d}", f"sch-{n % SCHOOLS}", f"sch-{(n + 1) % SCHOOLS}"
            student = {"student.first_name": "Ada", "student.last_name": "Lovelace", "student.birth_date": "2010-05-04"}
            records: list[Mapping[str, object]] = [
                {"type": "enroll", "student_id": sid, "school_id": school, "entry_date": "2024-09-03",
                 "grade_level": "09", "student": student},
                *({"type": "attendance", "student_id": sid, "school_id": school, "date": f"2024-10-{day:02d}",
                   "category": "absent" if day % 3 else "tardy", "excused": day % 2 == 0} for day in range(1, 9)),
                {"type": "suspension", "student_id": sid, "school_id": school, "start_date": "2024-11-04",
                 "end_date": "2024-11-05", "in_school": False},
                {"type": "change_school", "student_id": sid, "from_school_id": school, "to_school_id": other,
                 "change_date": "2025-01-06"},
                {"type": "withdraw", "student_id": sid, "school_id": other, "exit_date": "2025-05-30",
                 "exit_code": "transfer"},
            ]  # fmt: skip
            tail = ",\n" if n < students - 1 else "\n"
            f.write(",\n".join(json.dumps(r) for r in records) + tail)
        f.write("]}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--per-student", type=int, default=10)
    ap.add_argument("--zip", default=os.path.join(tempfile.gettempdir(), "homeroom-bench-oneroster.zip"))
    ap.add_argument("--no-tracemalloc", action="store_true")
    ap.add_argument("--batch-students", type=int, default=0, help="also a JSON batch for this many students")
    ap.add_argument("--fingerprints", type=int, default=100_000, help="records whose fingerprint() is timed")
    args = ap.parse_args()
    tag = f"{args.zip}.{args.students}x{args.per_student}"
    if not os.path.exists(tag):
        t = time.perf_counter()
        big_oneroster_zip(args.zip, args.students, args.per_student, schools=SCHOOLS)
        Path(tag).write_text("")
        print(f"generated {args.zip} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    out: dict[str, object] = {
        "students": args.students,
        "enrollments": args.students * args.per_student,
        "zip_bytes": os.path.getsize(args.zip),
        "parse": run(args.zip, validate=False),
        "parse_validate": run(args.zip, validate=True),
        "fingerprint": fingerprints(args.zip, args.fingerprints),
    }
    if args.batch_students:
        batch = os.path.join(tempfile.gettempdir(), f"homeroom-bench-batch.{args.batch_students}.json")
        if not os.path.exists(batch):
            write_batch(batch, args.batch_students)
        out["batch_parse"] = run(batch, validate=False, parse=parse_batch)
        out["batch_parse_validate"] = run(batch, validate=True, parse=parse_batch)
        out["batch_fingerprint"] = fingerprints(batch, args.fingerprints, parse=parse_batch)
    if not args.no_tracemalloc:
        tracemalloc.start()
        traced = run(args.zip, validate=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["parse_validate_traced"] = traced
        out["peak_python_mb"] = round(peak / 1e6, 1)
        tracemalloc.start()
        run(args.zip, validate=False)
        _, peak_parse = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["peak_python_mb_parse_only"] = round(peak_parse / 1e6, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
