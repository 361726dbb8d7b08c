"""`python -m ingest`: serve the webhook endpoints on INGEST_HOST:INGEST_PORT."""

from __future__ import annotations

from bridge.config import get_settings
from bridge.edge import serve
from bridge.logs import configure_logging

from .app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging("ingest", settings.log_level)
    serve(
        create_app(settings),
        settings.ingest_host,
        settings.ingest_port,
        log_level="warning",
        # TRUSTED_PROXIES alone decides whose X-Forwarded-For is believed (ingest.defences);
        # uvicorn's own handling would believe any local peer's.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
