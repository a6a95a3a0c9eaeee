"""The alert rules under Prometheus's own tools: `promtool check rules` on deploy/prometheus/alerts.yml
and `promtool test rules` on the rule unit tests in tests/ops/promtool/ (each fires on the first
evaluation it should, and not before). promtool comes from Debian's `prometheus` package."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ops.files import ALERTS, PROMETHEUS

PROMTOOL = shutil.which("promtool")
UNIT_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.test.yml"))

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian's prometheus package)")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_shipped_config_passes_promtool_check_config_as_written() -> None:
    """The config as committed, its rule file found beside it (as in the container's /etc/prometheus)."""
    result = _run("check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_the_alert_rules_pass_promtool_check() -> None:
    result = _run("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=[p.stem for p in UNIT_TESTS])
def test_alert_rule_unit_tests_pass(unit_test: Path) -> None:
    result = _run("test", "rules", str(unit_test))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_breach_and_guessing_alert_has_a_rule_unit_test() -> None:
    from tests.ops.files import alert_rules

    tested = "".join(p.read_text() for p in UNIT_TESTS)
    breach = [r["alert"] for r in alert_rules() if r["alert"].startswith(("HomeroomBreach", "HomeroomLinking"))]
    assert breach and all(f"alertname: {name}" in tested for name in breach)


def test_every_alert_on_an_increase_fires_on_the_first_event() -> None:
    """Each alert on the increase() of a counter has a unit test where it fires (first-occurrence.test.yml
    for most, each starting its counter at 0 and firing on the step to 1)."""
    from tests.ops.files import alert_rules

    first = "".join(p.read_text() for p in UNIT_TESTS)
    on_increase = [r["alert"] for r in alert_rules() if re.search(r"increase\([^)]*\)\)\s*>\s*0", r["expr"])]
    assert len(on_increase) >= 5, on_increase
    assert [name for name in on_increase if f"alertname: {name}\n        exp_alerts:\n          -" not in first] == []


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: one expecting the overdue alert a day early does."""
    incidents = next(p for p in UNIT_TESTS if p.name == "incidents.test.yml")
    broken = incidents.read_text().replace("eval_time: 241h", "eval_time: 216h", 1)
    assert broken != incidents.read_text()
    path = incidents.parent / f".broken-{tmp_path.name}.test.yml"
    path.write_text(broken)
    try:
        assert _run("test", "rules", str(path)).returncode != 0
    finally:
        path.unlink()
