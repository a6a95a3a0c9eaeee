"""The whole stack on embedded defaults: PostgreSQL, the Tansu broker, the five
services and the portal, each in its own process, as `./run stack` and `./run demo` run them.

The embedded broker keeps topics in memory, so the stack is ephemeral by design: every
run starts from empty servers in a temporary directory and removes it on exit. Point
KAFKA_BOOTSTRAP_SERVERS and HOMEROOM_DATABASE_URL at real servers and run
`homeroom serve NAME` per service for anything that must persist (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from homeroom.registry import SERVICES, load_spec
from homeroom.storage import OWNER_ROLE, bootstrap_roles, login_role, with_user
from homeroom.tlog.signing import load_or_create_signer
from homeroom.witness import load_private_key
from homeroom_dev.infra import process
from homeroom_dev.infra.broker import EmbeddedBroker
from homeroom_dev.infra.postgres import EmbeddedPostgres
from homeroom_dev.infra.smtp import EmbeddedSMTP, read_mbox

WITNESS_PORT = 8007  # the audit log's witness (homeroom/witness.py), not one of the services


def service_url_env(ports: dict[str, int], host: str = "127.0.0.1") -> dict[str, str]:
    """HOMEROOM_<NAME>_URL for every service, so services find each other."""
    return {f"HOMEROOM_{name.upper()}_URL": f"http://{host}:{port}" for name, port in ports.items()}


@dataclass
class Stack:
    """Embedded servers plus one `homeroom serve` process per service."""

    services: list[str] = field(default_factory=lambda: list(SERVICES))
    fixed_ports: bool = True
    home: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="homeroom-stack-")))
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    smtp: EmbeddedSMTP | None = None
    ports: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Every process this stack starts answers /readyz with it: a port taken by someone else
    # between choosing it and binding it is then an error, never the other process's "ready".
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        assert self.postgres is not None and self.broker is not None
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            # Migrations as the owner role; each service connects as its own login (_spawn).
            "HOMEROOM_DATABASE_URL": self.postgres.server_url,
            "HOMEROOM_MIGRATION_DATABASE_URL": with_user(self.postgres.server_url, OWNER_ROLE),
            # Ephemeral data, ephemeral keys: each run has its own pseudonym key, keyring and dev issuer.
            "HOMEROOM_SECRETS_DIR": str(self.secrets_dir),
            "HOMEROOM_INSTANCE_ID": self.instance_id,
            "HOMEROOM_AUTH_DEV_KEY_FILE": str(self.secrets_dir / "dev-issuer.pem"),
            # The demo and the browser tests sign in dozens of times from one address.
            "HOMEROOM_PORTAL_SIGN_IN_RATE_LIMIT": os.environ.get("HOMEROOM_PORTAL_SIGN_IN_RATE_LIMIT", "300/minute"),
            # Notices go by e-mail to the stack's own SMTP server (every message kept in mail.mbox).
            **({"HOMEROOM_SMTP_HOST": self.smtp.host, "HOMEROOM_SMTP_PORT": str(self.smtp.port)} if self.smtp else {}),
            **service_url_env(self.ports),
            **self._family_sign_in(),
        }

    def _family_sign_in(self) -> dict[str, str]:
        """The portal's OIDC sign-in against its own development identity provider
        (services/portal/dev_identity.py), so families sign in with an identity that names no
        child and reach one only through a linking code (issue 24)."""
        if "portal" not in self.ports:
            return {}
        portal = self.url("portal")
        return {
            "HOMEROOM_PORTAL_OIDC_ISSUER": f"{portal}/dev-identity",
            "HOMEROOM_PORTAL_OIDC_CLIENT_ID": "homeroom-portal",
            "HOMEROOM_PORTAL_OIDC_REDIRECT_URI": f"{portal}/sign-in/oidc/callback",
        }

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def mailbox_path(self) -> Path:
        return self.home / "mail.mbox"

    def mail(self) -> list[EmailMessage]:
        """Every e-mail the services sent through the stack's SMTP server, oldest first."""
        return read_mbox(self.mailbox_path)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, timeout_s: float = 180.0) -> Stack:
        started = time.perf_counter()
        # The embedded server runs as an unprivileged user under root: it must be able to
        # pass through our (otherwise private, 0700) temporary directory to its own.
        os.chmod(self.home, 0o711)  # noqa: S103 - traverse only, no listing or writing
        self.postgres = EmbeddedPostgres(self.home / "postgres").start()
        self.timings["postgres_start_s"] = self.postgres.started_in_s
        # Least privilege as in production: an owner role migrates, each service logs in as
        # its own role that owns nothing (homeroom.storage).
        with_databases = [s for s in self.services if s != "portal"]
        set_roles = [role for s in with_databases for role in load_spec(s).database_roles]
        asyncio.run(bootstrap_roles(self.postgres.server_url, with_databases, set_roles))
        self.broker = EmbeddedBroker(log_dir=self.home).start()
        self.timings["broker_start_s"] = self.broker.started_in_s
        self.smtp = EmbeddedSMTP(self.mailbox_path).start()
        if "audit" in self.services:
            # First, and bound before the services' ports are chosen: a free port picked for
            # the witness afterwards could be one already promised to a service.
            self._start_witness()
        for name in self.services:
            port = SERVICES[name][1]
            self.ports[name] = port if self.fixed_ports and _port_free(port) else process.free_port()
        for name in self.services:
            self._children[name] = self._spawn(name, self.ports[name])
        self.wait_ready(timeout_s)
        self.timings["stack_ready_s"] = time.perf_counter() - started
        return self

    def _start_witness(self) -> None:
        """The witness that cosigns the audit log's checkpoints: its own process and key, pinned
        by audit; it trusts the audit log's public key (both keys made here, before either starts)."""
        self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_signer = load_or_create_signer(self.secrets_dir / "audit-signing.key")
        (self.secrets_dir / "audit-log.pub.pem").write_bytes(log_signer.public_key_pem())
        witness_key = load_private_key(self.secrets_dir / "witness.key", create=True)
        (self.secrets_dir / "witness.pub.pem").write_bytes(
            witness_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        port = WITNESS_PORT if self.fixed_ports and _port_free(WITNESS_PORT) else process.free_port()
        self.ports["witness"] = port
        env = {
            **os.environ,
            "HOMEROOM_WITNESS_PORT": str(port),
            "HOMEROOM_WITNESS_KEY_FILE": str(self.secrets_dir / "witness.key"),
            "HOMEROOM_WITNESS_STATE_FILE": str(self.home / "witness" / "state.json"),
            "HOMEROOM_WITNESS_LOG_PUBLIC_KEY_FILES": json.dumps([str(self.secrets_dir / "audit-log.pub.pem")]),
            "HOMEROOM_INSTANCE_ID": self.instance_id,
        }
        self._children["witness"] = process.spawn(
            [sys.executable, "-m", "homeroom.cli", "witness", "serve"],
            log_path=self.log("witness"),
            death_signal=signal.SIGTERM,
            env=env,
        )
        self.wait_ready(60, ["witness"])

    def _spawn(self, name: str, port: int, key: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env(), f"HOMEROOM_{name.upper()}_PORT": str(port)}
        if name in ("audit", "incidents") and "witness" in self.ports:
            # Audit sends heads to the witness; incidents refuses a scope whose head it did not cosign.
            env["HOMEROOM_AUDIT_WITNESS_URL"] = self.url("witness")
            env["HOMEROOM_AUDIT_WITNESS_PUBLIC_KEY_FILE"] = str(self.secrets_dir / "witness.pub.pem")
        env["HOMEROOM_DATABASE_URL"] = with_user(env["HOMEROOM_DATABASE_URL"], login_role(name))
        return process.spawn(
            [sys.executable, "-m", "homeroom.cli", "serve", name],
            log_path=self.log(key or name),
            death_signal=signal.SIGTERM,
            env=env,
        )

    # --- fault injection (tests/e2e/test_faults.py) -------------------------------------

    def pid(self, name: str) -> int:
        return self._children[name].pid

    def kill(self, name: str) -> None:
        """kill -9, as a crash would: no shutdown hooks run, nothing is committed."""
        process.kill_hard(self._children[name])

    def restart(self, name: str, timeout_s: float = 90.0) -> None:
        process.stop(self._children[name], signal.SIGTERM, timeout_s=15)
        self._children[name] = self._spawn(name, self.ports[name])
        self.wait_ready(timeout_s, [name])

    def add_instance(self, name: str, timeout_s: float = 90.0) -> str:
        """A second process of a service in the same consumer group, on its own port."""
        n = sum(1 for key in self._children if key.startswith(f"{name}#")) + 2
        key = f"{name}#{n}"
        self.ports[key] = process.free_port()
        self._children[key] = self._spawn(name, self.ports[key], key)
        self.wait_ready(timeout_s, [key])
        return key

    def repair(self, timeout_s: float = 90.0) -> None:
        """Whole again after a fault, for the next user of the same stack: PostgreSQL and the
        broker started if stopped, second instances stopped, any service process that exited
        started again, and every service ready."""
        assert self.postgres is not None and self.broker is not None
        self.postgres.start()
        self.broker.start()
        extra = [key for key in self._children if "#" in key]
        process.stop_all([self._children.pop(key) for key in extra], signal.SIGTERM, timeout_s=15)
        for key in extra:
            del self.ports[key]
        for name in self.services:
            if self._children[name].poll() is not None:
                self._children[name] = self._spawn(name, self.ports[name])
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float, names: list[str] | None = None) -> None:
        """Until each process answers /readyz as ready with this stack's instance id: an answer
        from another process on the same port never counts."""
        deadline = time.monotonic() + timeout_s
        pending = set(names or self.services)
        impostors: set[str] = set()
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in sorted(pending):
                    child = self._children[name]
                    if child.poll() is not None:
                        tail = "\n".join(self.log(name).read_text(errors="replace").splitlines()[-15:])
                        other = (
                            f"; another process answers on port {self.ports[name]}, not the one this stack started"
                            if name in impostors
                            else ""
                        )
                        raise RuntimeError(
                            f"service {name} exited with {child.returncode}{other}; its log ends:\n{tail}"
                        )
                    try:
                        answer = client.get(f"{self.url(name)}/readyz")
                    except httpx.HTTPError:
                        continue
                    if _answer_instance(answer) != self.instance_id:
                        impostors.add(name)
                    elif answer.status_code == 200:
                        pending.discard(name)
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout_s:.0f}s: {', '.join(sorted(pending))}")
                time.sleep(0.2)

    def log(self, name: str) -> Path:
        """A service's log; a second instance "records#2" logs to records-2.log."""
        return self.home / f"{name.replace('#', '-')}.log"

    def stop(self) -> None:
        # All at once: each service's shutdown (leaving its consumer groups, closing pools) waits
        # on the network, not the CPU, and one after another they took seconds per stack.
        process.stop_all(list(self._children.values()), signal.SIGTERM, timeout_s=15)
        self._children.clear()
        if self.smtp is not None:
            self.smtp.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _answer_instance(answer: httpx.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body.get("instance") if isinstance(body, dict) else None


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
