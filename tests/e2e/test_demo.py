"""The demo scenario, run as `./run demo` runs it: embedded servers, the services as
processes, every step over HTTP, each step's outcome asserted; afterwards nothing is left
running.

It shares its stack with the portal's pages and the live Prometheus test (`demo_stack` in
tests/conftest.py plays every step before the vendor's agreement ends); this test runs after
them (the collection hook orders it last), plays the remaining steps and stops the stack."""

from __future__ import annotations

import httpx
import pytest

from homeroom_dev.demo import statistics_page
from tests.stacks import DemoStack, child_processes

pytestmark = [pytest.mark.whole_stack, pytest.mark.stops_demo_stack]


def test_the_demo_scenario_passes_every_step_and_leaves_no_processes(demo_stack: DemoStack) -> None:
    steps = demo_stack.steps()
    demo_stack.play(steps[steps.index("agreement_ends") :])
    assert demo_stack.failures == 0, "\n".join(demo_stack.lines)
    assert len(demo_stack.lines) == len(steps)
    # The demo ends with the public comparison page: it shows a suppressed school cell as
    # "fewer than N", never its number, and offers the CSV.
    portal = demo_stack.stack.url("portal")
    page = statistics_page(portal, demo_stack.scenario)
    assert page is not None
    html = httpx.get(page, timeout=30).text
    found = demo_stack.scenario.facts["statistics"]
    assert found["school"] in html and "fewer than 10" in html
    assert f"/statistics/{found['snapshot_id']}.csv" in html
    csv_text = httpx.get(f"{portal}/statistics/{found['snapshot_id']}.csv", timeout=30).text
    assert found["school"] in csv_text and "fewer than 10" in csv_text
    demo_stack.stop()
    left = child_processes() - demo_stack.processes_before
    assert not left, f"processes left running after the stack stopped: {left}"
