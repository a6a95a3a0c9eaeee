"""`./run stack` never takes another process on its port for its own service.

A fixed port can be taken by someone else between the stack choosing it and its process
binding it; that process then dies on the bind while the other one answers /readyz. Every
process the stack starts echoes the stack's instance id in /readyz, so the stack waits for
its own answer and reports the dead process instead of "running" with the wrong URLs. (That
the stack's own processes answer with its id, every other stack test proves by starting.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import homeroom_dev.stack
from homeroom_dev.infra import process
from homeroom_dev.stack import Stack

pytestmark = pytest.mark.whole_stack


class _SaysReady(BaseHTTPRequestHandler):
    """Someone else's service: ready to every GET."""

    def do_GET(self) -> None:  # the http.server hook's name
        body = json.dumps({"status": "ready", "checks": {}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", process.free_port()), _SaysReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_taken_after_it_was_chosen_is_an_error_not_someone_elses_ready(
    other_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The witness's fixed port is the one the other server holds, and the check before the bind
    # saw it free (as it would have a moment before the other server took it).
    monkeypatch.setattr(homeroom_dev.stack, "WITNESS_PORT", other_server)
    monkeypatch.setattr(homeroom_dev.stack, "_port_free", lambda port: True)
    stack = Stack(services=["audit"], fixed_ports=True)
    try:
        with pytest.raises(RuntimeError) as failed:
            stack.start(timeout_s=60)
        message = str(failed.value)
        assert "witness exited" in message, message
        assert f"another process answers on port {other_server}" in message, message
        assert "audit" not in stack._children  # nothing started on top of the failure
    finally:
        stack.cleanup()
