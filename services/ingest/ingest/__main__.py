"""`python -m ingest`: serve the webhook endpoints."""

from __future__ import annotations

import os

import uvicorn

from bridge.config import get_settings
from bridge.logs import configure_logging

from .app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging("ingest", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=os.environ.get("INGEST_HOST", "127.0.0.1"),
        port=settings.ingest_port,
        log_level="warning",
        access_log=False,
        # TRUSTED_PROXIES alone decides whose X-Forwarded-For is believed (ingest.defences);
        # uvicorn's own handling would believe any local peer's.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
