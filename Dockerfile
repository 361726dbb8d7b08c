# syntax=docker/dockerfile:1
# One image for every process of the bridge; the command picks the service:
#   python -m ingest | python -m receipts | python -m dispatcher | python -m siteti_sandbox
#   python -m bridge.topics (one-shot) | bridge … (the CLI)
# Build: docker build -t siteti-bridge:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# Same uv as scripts/install.sh, so the lock resolves identically.
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore "uv==0.13.9"

# COMPILE_BYTECODE: the runtime filesystem is read-only, so .pyc files must exist up front.
# PYTHON_DOWNLOADS=never: use the image's interpreter, the one the runtime stage has too.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11

# The project is installed editable (uv's default): package data such as
# dispatcher/rules.yaml is read from the source tree, so the source must live at the same
# path (/app) in the runtime stage.
WORKDIR /app

# Dependencies only: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-install-project

COPY shared ./shared
COPY services ./services
COPY sandbox ./sandbox
COPY cli ./cli
# Runtime dependencies only (the `dev` extra is not requested), then the project itself.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen \
 && python -m compileall -q shared services sandbox cli

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric USER.
RUN groupadd --system --gid 10001 bridge \
 && useradd --system --uid 10001 --gid bridge --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin bridge \
 && mkdir -p /var/lib/dispatcher \
 && chown bridge:bridge /var/lib/dispatcher

WORKDIR /app
COPY --from=build /app /app

# Containers listen on every interface (the code defaults to 127.0.0.1 for local runs).
# DISPATCHER_DATADIR: faust's scratch directory, outside the read-only /app (a volume in k8s).
# BRIDGE_ENV_FILE: no settings file in the image; configuration comes from the environment.
# HOME=/tmp: the one writable place when the root filesystem is read-only (k8s mounts it).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    INGEST_HOST=0.0.0.0 \
    RECEIPTS_HOST=0.0.0.0 \
    CONSOLE_HOST=0.0.0.0 \
    DISPATCHER_HOST=0.0.0.0 \
    SANDBOX_HOST=0.0.0.0 \
    DISPATCHER_DATADIR=/var/lib/dispatcher/data \
    BRIDGE_ENV_FILE=/nonexistent/env

USER 10001:10001

# ingest, receipts, dispatcher metrics/admin, sandbox
EXPOSE 8000 8001 8002 8090

# No HEALTHCHECK: the port differs per service; compose and Kubernetes define their own.
CMD ["python", "-m", "ingest"]
