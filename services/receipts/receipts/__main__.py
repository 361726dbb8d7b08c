"""`python -m receipts`: serve on RECEIPTS_HOST (default 127.0.0.1) and `receipts_port`."""

from __future__ import annotations

import os

import uvicorn

from bridge.config import get_settings
from bridge.logs import configure_logging

from .app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging("receipts", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("RECEIPTS_HOST", "127.0.0.1"),
        port=settings.receipts_port,
        # Our structlog lines are the log; uvicorn's own config would replace the JSON set-up.
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
