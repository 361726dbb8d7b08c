"""`python -m siteti_sandbox`: serve the sandbox with uvicorn (settings: see config.py;
`SANDBOX_LOG_LEVEL` [info] sets uvicorn's log level)."""

from __future__ import annotations

import os

import uvicorn

from .app import create_app
from .config import SandboxConfig


def main() -> None:
    config = SandboxConfig.from_env()
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=os.environ.get("SANDBOX_LOG_LEVEL", "info"),
    )


if __name__ == "__main__":
    main()
