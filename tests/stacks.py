"""The whole stack shared by several test modules (the `demo_stack` fixture in tests/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from homeroom.scenario import Scenario
from homeroom.stack import Stack


@dataclass
class DemoStack:
    """The whole stack with the demo scenario played up to the end of the vendor's agreement:
    shared by the demo test (which plays the rest and stops the stack), the portal's pages and
    the live Prometheus test, so CI starts one stack for the three instead of three."""

    stack: Stack
    scenario: Scenario
    lines: list[str]  # what each step said, as `homeroom demo` prints it
    processes_before: set[int]  # this process's children before the stack started
    failures: int = 0

    def steps(self) -> list[str]:
        return [step.__name__ for _, step in self.scenario.steps()]

    def play(self, steps: list[str]) -> None:
        self.failures += self.scenario.run(only=steps)


def child_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != "zombie"}
