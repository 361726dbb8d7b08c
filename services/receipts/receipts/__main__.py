"""`python -m receipts`: serve on RECEIPTS_HOST (default 127.0.0.1) and RECEIPTS_PORT."""

from __future__ import annotations

from bridge.config import get_settings
from bridge.edge import serve
from bridge.logs import configure_logging

from .app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging("receipts", settings.log_level)
    serve(create_app(settings), settings.receipts_host, settings.receipts_port)


if __name__ == "__main__":
    main()
