"""The demo scenario, run as `homeroom demo` runs it: embedded servers, five service
processes, every step over HTTP, each step's outcome asserted; afterwards nothing is left
running."""

from __future__ import annotations

import psutil

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
    finally:
        stack.cleanup()
    left = _descendants() - before
    assert not left, f"processes left running after the stack stopped: {left}"
