"""The demo scenario, run as `homeroom demo` runs it: embedded servers, the services as
processes, every step over HTTP, each step's outcome asserted; afterwards nothing is left
running.

It shares its stack with the portal's pages and the live Prometheus test (`demo_stack` in
tests/conftest.py plays every step before the vendor's agreement ends); this test runs after
them (the collection hook orders it last), plays the remaining steps and stops the stack."""

from __future__ import annotations

import pytest

from tests.stacks import DemoStack, child_processes

pytestmark = [pytest.mark.whole_stack, pytest.mark.stops_demo_stack]


def test_the_demo_scenario_passes_every_step_and_leaves_no_processes(demo_stack: DemoStack) -> None:
    steps = demo_stack.steps()
    demo_stack.play(steps[steps.index("agreement_ends") :])
    assert demo_stack.failures == 0, "\n".join(demo_stack.lines)
    assert len(demo_stack.lines) == len(steps)
    demo_stack.stop()
    left = child_processes() - demo_stack.processes_before
    assert not left, f"processes left running after the stack stopped: {left}"
