#!/usr/bin/env bash
# Install the pinned Python environment (.venv) from uv.lock. Idempotent and quick when done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "installing uv $UV_VERSION (the project's package manager)"
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
# --frozen: exactly the versions in uv.lock, never a fresh resolution.
uv sync --frozen --extra dev --quiet --python "$(command -v python3.11 || command -v python3)"
