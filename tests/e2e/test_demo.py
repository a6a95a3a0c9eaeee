"""The demo scenario, run as `homeroom demo` runs it: embedded servers, five service
processes, every step over HTTP, each step's outcome asserted; afterwards nothing is left
running."""

from __future__ import annotations

import httpx
import psutil

from homeroom.demo import statistics_page
from homeroom.scenario import Scenario
from homeroom.stack import Stack


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != "zombie"}


def test_the_demo_scenario_passes_every_step_and_leaves_no_processes() -> None:
    before = _descendants()
    stack = Stack(fixed_ports=False)
    lines: list[str] = []
    try:
        stack.start()
        scenario = Scenario(
            {name: stack.url(name) for name in stack.services},
            stack.secrets_dir,
            say=lambda *a, **_: lines.append(" ".join(map(str, a))),
        )
        failures = scenario.run()
        assert failures == 0, "\n".join(lines)
        assert len(lines) == len(scenario.steps())
        # The demo ends with the public comparison page: it shows a suppressed school cell as
        # "fewer than N", never its number, and offers the CSV.
        page = statistics_page(stack.url("portal"), scenario)
        assert page is not None
        html = httpx.get(page, timeout=30).text
        found = scenario.facts["statistics"]
        assert found["school"] in html and "fewer than 10" in html
        assert f"/statistics/{found['snapshot_id']}.csv" in html
        csv_text = httpx.get(f"{stack.url('portal')}/statistics/{found['snapshot_id']}.csv", timeout=30).text
        assert found["school"] in csv_text and "fewer than 10" in csv_text
    finally:
        stack.cleanup()
    left = _descendants() - before
    assert not left, f"processes left running after the stack stopped: {left}"
