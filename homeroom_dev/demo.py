"""`./run demo` and `./run stack`: the whole system on embedded defaults.

The demo brings the stack up (embedded PostgreSQL and Tansu, five service processes and the portal),
then plays the scenario steps in `homeroom_dev.scenario` against the running services over
HTTP, as the people who use Homeroom would, printing what each step showed. The same
scenario runs in `tests/e2e/test_demo.py`, which asserts every step's outcome.
"""

from __future__ import annotations

import signal
import threading
import time
from urllib.parse import urlencode

from rich.console import Console

from homeroom_dev.scenario import VENDOR, Scenario
from homeroom_dev.stack import Stack

console = Console(highlight=False)


def _up(stack: Stack) -> Stack:
    with console.status("Starting embedded PostgreSQL, the Kafka-protocol broker, six services and the portal..."):
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
        pages = url if name == "portal" else f"{url}/docs"
        console.print(f"  {name:<9} {pages}  (metrics {url}/metrics, health {url}/readyz)")
    if stack.smtp is not None:
        console.print(
            f"  mail      smtp://{stack.smtp.host}:{stack.smtp.port}  (every notice sent: {stack.mailbox_path})"
        )
    console.print("  Grafana and Prometheus: `docker compose up` (docs/operations.md); dashboards in deploy/grafana/")


def portal_sign_in_links(portal_url: str, scenario: Scenario) -> dict[str, str]:
    """A development sign-in link per role, pre-filled with the scenario's people."""
    people: dict[str, dict[str, str]] = {
        "parent": {"role": "parent", "subject": "parent-of-mover", "students": scenario.mover_key},
        "compliance": {"role": "compliance", "subject": "compliance-officer"},
        "district staff": {
            "role": "district_staff",
            "subject": f"data-office-{scenario.district_b.id}",
            "district": scenario.district_b.id,
        },
    }
    if "agreement_id" in scenario.facts:
        people["vendor"] = {
            "role": "vendor",
            "subject": "brightpath-app",
            "agreement": scenario.facts["agreement_id"],
            "organization": VENDOR,
        }
    return {who: f"{portal_url}/sign-in?{urlencode(query)}" for who, query in people.items()}


def _breach_counts(scenario: Scenario) -> None:
    breach = scenario.facts.get("breach")
    if not breach:
        return
    console.print(
        f"\n[bold]Breach response[/] (incident {breach['incident_id']}): {breach['students']} students, "
        f"{breach['elements']} data elements, {breach['disclosures']} disclosures, proven against the log "
        f"(tree size {breach['tree_size']}, {breach['proof_hashes']} proof hashes, "
        f"bundle {breach['bundle_bytes']:,} bytes); {breach['letters']} letters sent; "
        f"CPO report due {breach['cpo_due'][:10]}, families {breach['parents_due'][:10]}"
    )


def _portal(stack: Stack, scenario: Scenario, keep_running: bool) -> None:
    if "portal" not in stack.services:
        return
    console.print(f"\n[bold]The portal[/] {stack.url('portal')}  (development sign-in, one link per role)")
    for who, link in portal_sign_in_links(stack.url("portal"), scenario).items():
        console.print(f"  {who:<15} {link}", soft_wrap=True)
    if not keep_running:
        console.print("  (the stack stops when the demo ends; `./run demo --keep-running` keeps these links working)")


def statistics_page(portal_url: str, scenario: Scenario) -> str | None:
    found = scenario.facts.get("statistics")
    if not found:
        return None
    return f"{portal_url}/statistics?{urlencode({'district': found['district'], 'column': found['column']})}"


def _statistics(stack: Stack, scenario: Scenario) -> None:
    """The demo's last words: the public comparison page, and a table with a suppressed cell."""
    page = statistics_page(stack.url("portal"), scenario) if "portal" in stack.services else None
    if page is None:
        return
    found = scenario.facts["statistics"]
    console.print(
        f"\n[bold]Statewide comparisons[/] (snapshot v{found['version']}, {found['suppressed']} of "
        f"{found['cells']} cells suppressed) {page}",
        soft_wrap=True,
    )
    console.print(f"  {found['school']}: students enrolled")
    for column, shown in found["table"]:
        console.print(f"    {column:<24} {shown:>16}")


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
    stack = Stack()
    try:
        _up(stack)
        scenario = Scenario({name: stack.url(name) for name in stack.services}, stack.secrets_dir, say=console.print)
        failures = scenario.run()
        _breach_counts(scenario)
        _where(stack)
        _portal(stack, scenario, keep_running)
        _statistics(stack, scenario)
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
