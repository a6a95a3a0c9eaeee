"""The demo scenario: what the people who use Homeroom do, step by step, over HTTP.

Each step is a method that talks to the running services and returns what it saw; a
step that did not see what it should raises `StepFailed`, which the demo counts and the
end-to-end test turns into a failure. Steps grow with the services: each service's
issue adds the steps that show its work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


class StepFailed(AssertionError):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Scenario:
    urls: dict[str, str]
    say: Callable[..., Any] = print
    timeout_s: float = 30.0
    results: dict[str, Any] = field(default_factory=dict)

    def steps(self) -> list[tuple[str, Callable[[httpx.Client], str]]]:
        return [
            ("Every service is up, with its database and the bus", self.services_ready),
        ]

    def run(self, *, stop_on_failure: bool = False) -> int:
        failures = 0
        with httpx.Client(timeout=self.timeout_s) as http:
            for number, (title, step) in enumerate(self.steps(), 1):
                try:
                    shown = step(http)
                except (StepFailed, httpx.HTTPError) as exc:
                    failures += 1
                    self.say(f"[red]✗[/] {number}. {title}: {exc}")
                    if stop_on_failure:
                        raise
                    continue
                self.say(f"[green]✓[/] {number}. {title}: {shown}")
        return failures

    # --- steps ----------------------------------------------------------------------------

    def services_ready(self, http: httpx.Client) -> str:
        shown = []
        for name, url in self.urls.items():
            ready = http.get(f"{url}/readyz")
            expect(ready.status_code == 200, f"{name} is not ready: {ready.text}")
            paths = http.get(f"{url}/openapi.json").json()["paths"]
            shown.append(f"{name} ({len(paths)} paths)")
        return ", ".join(shown)
