"""Child processes that never outlive their parent.

The embedded broker and database are real server processes. If the Python process that
started them dies (Ctrl-C, a crashed test run, kill -9), they must die too: Linux's
parent-death signal does that without relying on atexit handlers running.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _parent_death_signal(sig: int) -> Callable[[], None]:
    libc_name = ctypes.util.find_library("c")

    def set_signal() -> None:  # runs in the child between fork and exec (after any setuid)
        if libc_name:
            ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)

    return set_signal


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f}s")


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    death_signal: int = signal.SIGTERM,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed when it is stopped
    try:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user,
            env=env,
            preexec_fn=_parent_death_signal(death_signal),
        )
    finally:
        log.close()


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """Ask politely, then insist. Safe to call twice."""
    stop_all([process], sig, timeout_s)


def stop_all(processes: Sequence[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    """`stop` for many at once: every one is asked before any is waited for (once only: a
    second SIGTERM makes uvicorn skip its graceful shutdown)."""
    running = [child for child in processes if child.poll() is None]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
    deadline = time.monotonic() + timeout_s
    for child in running:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait(5)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash would: for fault tests."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)
