"""Ingest parse + validate throughput on a OneRoster 1.1 zip (default: 100,000 students and
1,000,000 class enrollments), with peak Python memory measured by tracemalloc.

    .venv/bin/python bench/ingest_parse.py [--students N] [--per-student K] [--zip PATH] [--no-tracemalloc]

The zip is generated once to /tmp (never committed). Three runs are timed: parse only, parse +
validate, and parse + validate under tracemalloc (tracemalloc slows allocation, so its time is
not the throughput figure; its peak is the memory figure). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.ingest.formats.oneroster_csv import parse_oneroster  # noqa: E402
from services.ingest.parsed_records import RecordError, RecordWarning  # noqa: E402
from services.ingest.validation import Validator  # noqa: E402
from tests.services.ingest.ingest_data import big_oneroster_zip  # noqa: E402

SCHOOLS = 20


def run(path: str, validate: bool) -> dict[str, float | int]:
    accepted = refused = warnings = 0
    start = time.perf_counter()
    with open(path, "rb") as f:
        items = parse_oneroster(f)
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
    seconds = time.perf_counter() - start
    total = accepted + refused
    return {
        "records": total,
        "accepted": accepted,
        "refused": refused,
        "warnings": warnings,
        "seconds": round(seconds, 2),
        "records_per_s": round(total / seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=100_000)
    ap.add_argument("--per-student", type=int, default=10)
    ap.add_argument("--zip", default=os.path.join(tempfile.gettempdir(), "homeroom-bench-oneroster.zip"))
    ap.add_argument("--no-tracemalloc", action="store_true")
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
    }
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
