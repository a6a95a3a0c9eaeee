# syntax=docker/dockerfile:1.7
# One image for all five Homeroom services: `docker run IMAGE serve <name>`.
#
# - Base pinned by version tag (python:3.11.13-slim-bookworm). For byte-for-byte rebuilds
#   pin the digest too: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>.
# - Dependencies come only from requirements.lock, the runtime lock, every one checked against
#   its hash (`uv pip sync --require-hashes`); the project itself (the wheel: homeroom/ and
#   services/) is installed with --no-deps. The embedded servers, test and lint tools are in
#   requirements-dev.lock, which only ./run and CI install (tests/ops/test_dockerfile.py).
# - Runs as an unprivileged user (uid/gid 10001); no secret is ever copied into the image:
#   keys, passwords and tokens are mounted at run time (docker-compose.yml `secrets:`).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: a virtual environment at /opt/homeroom -------------------------------------
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN uv venv --python /usr/local/bin/python3.11 /opt/homeroom
WORKDIR /src
# The lock first, alone: the dependency layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip sync --python /opt/homeroom/bin/python --require-hashes requirements.lock
COPY pyproject.toml README.md ./
COPY homeroom ./homeroom
COPY services ./services
# hatchling comes from the lock (installed above), so no unpinned build backend is fetched.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/homeroom/bin/python --no-deps --no-build-isolation . \
 && /opt/homeroom/bin/homeroom --help > /dev/null

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG HOMEROOM_UID=10001
LABEL org.opencontainers.image.title="homeroom" \
      org.opencontainers.image.description="Homeroom student-data exchange: ingest, records, consent, transfer and audit services" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid "${HOMEROOM_UID}" homeroom \
 && useradd --system --uid "${HOMEROOM_UID}" --gid homeroom --home-dir /var/lib/homeroom \
            --no-create-home --shell /usr/sbin/nologin homeroom \
 && install -d -o homeroom -g homeroom -m 0700 \
            /var/lib/homeroom /var/lib/homeroom/keyring /var/lib/homeroom/secrets /var/lib/homeroom/uploads
COPY --from=build /opt/homeroom /opt/homeroom
COPY deploy/docker/healthcheck.py /usr/local/bin/homeroom-healthcheck
ENV PATH=/opt/homeroom/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/homeroom
USER ${HOMEROOM_UID}:${HOMEROOM_UID}
# ingest, records, consent, transfer, audit, portal, incidents, reports (homeroom/registry.py SERVICES)
EXPOSE 8001 8002 8003 8004 8005 8006 8008 8009
# Liveness: GET /healthz on the port of the service this container serves.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/homeroom-healthcheck"]
ENTRYPOINT ["homeroom"]
CMD ["--help"]
