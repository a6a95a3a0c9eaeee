"""`./run test` (and so `.ci/run`, which calls exactly it) fails when pytest collects nothing:
pytest's exit code 5 would otherwise pass CI with no test run. And the whole-stack tests form
the one xdist group `./run test` relies on to run them one after another."""

from __future__ import annotations

import os
import subprocess

from tests.ops.files import ROOT


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_a_selection_that_collects_no_test_fails_the_run() -> None:
    result = _run(
        str(ROOT / "run"),
        *("test", "tests/ops/test_topics.py", "-k", "no_test_has_this_name", "-p", "no:cacheprovider"),
        env={**os.environ, "HOMEROOM_TEST_WORKERS": "0"},
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pytest collected no tests: failing" in result.stderr
    assert "deselected" in result.stdout  # pytest itself ran, and found nothing to run


def test_the_whole_stack_tests_form_their_xdist_groups() -> None:
    """`--dist loadgroup` sends a group to one worker only if the node ids carry "@<group>"
    (tests/conftest.py writes it: pytest-xdist 3.8's own suffix is lost under pytest 9): the
    fault tests in one group, the other stack tests in another, in-process tests in none."""
    result = _run(
        str(ROOT / ".venv" / "bin" / "python"),
        *("-m", "pytest", "-n", "1", "--dist", "loadgroup", "-v", "--setup-plan", "-p", "no:cacheprovider"),
        *("tests/e2e/test_demo.py", "tests/e2e/test_faults.py", "tests/ops/test_topics.py"),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "test_demo.py::test_the_demo_scenario_passes_every_step_and_leaves_no_processes@whole-stack" in result.stdout
    fault_test = "test_records_killed_between_its_state_commit_and_its_offset_commit_replays_nothing"
    assert f"test_faults.py::{fault_test}@whole-stack-faults" in result.stdout
    assert "test_topics.py::test_script_is_valid_bash@" not in result.stdout
