"""`python -m dispatcher`: run one dispatcher worker."""

from __future__ import annotations

import sys

from bridge.logs import configure_logging

from .app import app, settings


def main() -> None:
    configure_logging("dispatcher", settings.log_level)
    sys.argv = [sys.argv[0], "worker", "--loglevel", settings.log_level.lower(), *sys.argv[1:]]
    app.main()


if __name__ == "__main__":
    main()
