"""The whole stack shared by several test modules (the `demo_stack` fixture in tests/conftest.py),
and a real Prometheus (Debian's `prometheus` binary) scraping it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from homeroom_dev.infra import process
from homeroom_dev.scenario import Scenario
from homeroom_dev.stack import Stack
from tests.ops.files import ALERTS, PROMETHEUS


@dataclass
class LivePrometheus:
    """Prometheus with the shipped config and alert rules, its scrape jobs pointed at a stack's ports."""

    url: str
    child: subprocess.Popen[bytes]
    log: Path
    jobs: dict[str, str] = field(default_factory=dict)  # job name → the target it scrapes
    started_at: float = field(default_factory=time.monotonic)  # scraping since (before the first demo step)

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query's whole answer (status, data or error)."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30).json()
        return answer

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus's active scrape targets, each with its job, health and last error."""
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def api(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", timeout=30).json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def stop(self) -> None:
        process.stop(self.child, signal.SIGTERM, timeout_s=15)


def start_prometheus(stack: Stack, home: Path) -> LivePrometheus | None:
    """The shipped deploy/prometheus/prometheus.yml with each `homeroom-<service>` job scraping that
    service of the stack (a job for a service the stack lacks is an error), every second; None
    where Debian's prometheus package is not installed (`./run test` installs it)."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    config = yaml.safe_load(PROMETHEUS.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    port = process.free_port()
    jobs: dict[str, str] = {}
    for job in config["scrape_configs"]:
        name = job["job_name"]
        service = name.removeprefix("homeroom-")
        if name == "prometheus":
            target = f"127.0.0.1:{port}"
        else:
            assert service in stack.ports, f"the shipped config scrapes {name}, a service the stack does not run"
            target = f"127.0.0.1:{stack.ports[service]}"
        job.pop("dns_sd_configs", None)
        job["static_configs"] = [{"targets": [target]}]
        jobs[name] = target
    home.mkdir(parents=True, exist_ok=True)
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = home / "prometheus.log"
    child = process.spawn(
        [
            binary,
            f"--config.file={home / 'prometheus.yml'}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=log,
    )
    live = LivePrometheus(f"http://127.0.0.1:{port}", child, log, jobs)
    deadline = time.monotonic() + 60
    while True:
        if child.poll() is not None:
            raise RuntimeError(f"prometheus exited with {child.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # Ready is not scraping: Prometheus applies its targets a few seconds later (its scrape
            # manager reloads at most every 5 s), and a scenario that ran in between would be seen
            # only as series that were already at their final value (rate 0, quantile NaN). So the
            # stack is handed over once every job has been scraped successfully.
            if httpx.get(f"{live.url}/-/ready", timeout=2).status_code == 200 and _every_job_scraped(live):
                return live
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            live.stop()
            raise TimeoutError(f"prometheus not ready after 60 s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _every_job_scraped(live: LivePrometheus) -> bool:
    up = {t["labels"]["job"] for t in live.targets() if t["health"] == "up"}
    return up == set(live.jobs)


@dataclass
class DemoStack:
    """The whole stack with the demo scenario played up to the end of the vendor's agreement:
    shared by the demo test (which plays the rest and stops the stack), the portal's pages and
    the live Prometheus test, so CI starts one stack for the three instead of three. Prometheus
    scrapes it from before the first step, so its panels see the scenario happen."""

    stack: Stack
    scenario: Scenario
    lines: list[str]  # what each step said, as `./run demo` prints it
    processes_before: set[int]  # this process's children before the stack started
    prometheus: LivePrometheus | None = None
    failures: int = 0

    def steps(self) -> list[str]:
        return [step.__name__ for _, step in self.scenario.steps()]

    def play(self, steps: list[str]) -> None:
        self.failures += self.scenario.run(only=steps)

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        self.stack.cleanup()


def child_processes() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.is_running() and p.status() != "zombie"}
