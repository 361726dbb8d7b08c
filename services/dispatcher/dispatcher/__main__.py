"""`python -m dispatcher`: run one dispatcher worker."""

from __future__ import annotations

import sys

from bridge.logs import configure_logging

from .app import app, settings

# faust's worker spells two of the standard level names its own way.
FAUST_LEVELS = {"warning": "warn", "critical": "crit"}


def main() -> None:
    configure_logging("dispatcher", settings.log_level)
    level = settings.log_level.lower()
    level = FAUST_LEVELS.get(level, level)
    sys.argv = [sys.argv[0], "worker", "--loglevel", level, *sys.argv[1:]]
    app.main()


if __name__ == "__main__":
    main()
