"""`python -m console`: serve on CONSOLE_HOST (default 127.0.0.1) and CONSOLE_PORT."""

from __future__ import annotations

from bridge.config import get_settings
from bridge.edge import serve
from bridge.logs import configure_logging

from .app import create_app


def main() -> None:
    settings = get_settings()
    configure_logging("console", settings.log_level)
    # Our structlog lines are the log; uvicorn's own config would replace the JSON set-up.
    serve(create_app(settings), settings.console_host, settings.console_port, log_config=None)


if __name__ == "__main__":
    main()
