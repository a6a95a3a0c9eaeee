"""`./run test` (and so `.ci/run`, which calls exactly it) fails when pytest collects nothing:
pytest's exit code 5 would otherwise pass CI with no test run."""

from __future__ import annotations

import os
import subprocess

from tests.ops.files import ROOT


def test_a_selection_that_collects_no_test_fails_the_run() -> None:
    result = subprocess.run(
        [
            str(ROOT / "run"),
            "test",
            "tests/ops/test_topics.py",
            "-k",
            "no_test_has_this_name",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env={**os.environ, "HOMEROOM_TEST_WORKERS": "0"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pytest collected no tests: failing" in result.stderr
    assert "deselected" in result.stdout  # pytest itself ran, and found nothing to run
