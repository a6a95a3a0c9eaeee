"""`homeroom demo` and `homeroom stack`: the whole system on embedded defaults.

The demo brings the stack up (embedded PostgreSQL and Tansu, five service processes),
then plays the scenario steps in `homeroom.scenario` against the running services over
HTTP, as the people who use Homeroom would, printing what each step showed. The same
scenario runs in `tests/e2e/test_demo.py`, which asserts every step's outcome.
"""

from __future__ import annotations

import signal
import threading
import time

from rich.console import Console

from homeroom.stack import Stack

console = Console(highlight=False)


def _up(stack: Stack) -> Stack:
    with console.status("Starting embedded PostgreSQL, the Kafka-protocol broker and five services..."):
        stack.start()
    t = stack.timings
    console.print(
        f"[green]✓[/] stack ready in {t['stack_ready_s']:.1f}s "
        f"(PostgreSQL {t['postgres_start_s']:.2f}s, broker {t['broker_start_s']:.2f}s); logs in {stack.home}"
    )
    return stack


def _where(stack: Stack) -> None:
    console.print("\n[bold]Where things are[/]")
    for name in stack.services:
        url = stack.url(name)
        console.print(f"  {name:<9} {url}/docs  (metrics {url}/metrics, health {url}/readyz)")
    console.print("  Grafana and Prometheus: `docker compose up` (docs/operations.md); dashboards in deploy/grafana/")


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def run_stack() -> None:
    stack = Stack()
    try:
        _up(stack)
        _where(stack)
        console.print("\nRunning. Ctrl-C stops everything and removes the temporary data.")
        _wait_for_interrupt()
    finally:
        with console.status("Stopping..."):
            stack.cleanup()


def run_demo(*, keep_running: bool = False) -> int:
    """Play the scenario; 0 when every step showed what it should."""
    from homeroom.scenario import Scenario

    stack = Stack()
    try:
        _up(stack)
        scenario = Scenario({name: stack.url(name) for name in stack.services}, stack.secrets_dir, say=console.print)
        failures = scenario.run()
        _where(stack)
        if failures:
            console.print(f"\n[red]✗ {failures} step(s) did not show what they should[/]")
        else:
            console.print("\n[green]✓ every step of the demo showed what it should[/]")
        if keep_running:
            console.print("\nStill running. Ctrl-C stops everything.")
            _wait_for_interrupt()
        return 1 if failures else 0
    finally:
        with console.status("Stopping..."):
            stack.cleanup()
