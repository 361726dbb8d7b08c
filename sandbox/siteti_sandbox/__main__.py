"""`python -m siteti_sandbox`: serve the sandbox (settings, `SANDBOX_LOG_LEVEL` included: see
config.py)."""

from __future__ import annotations

from bridge.edge import serve

from .app import create_app
from .config import SandboxConfig


def main() -> None:
    config = SandboxConfig.from_env()
    # uvicorn's access log stays on here: the sandbox's log is a record of what it was sent.
    serve(create_app(config), config.host, config.port, log_level=config.log_level, access_log=True)


if __name__ == "__main__":
    main()
