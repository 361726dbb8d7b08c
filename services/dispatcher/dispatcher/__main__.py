"""`python -m dispatcher`: run one dispatcher worker."""

from __future__ import annotations

import os
import sys

import faust

from bridge.logs import configure_logging, get_logger

from .app import app, settings

# faust's worker spells two of the standard level names its own way.
FAUST_LEVELS = {"warning": "warn", "critical": "crit"}


def main() -> None:
    configure_logging("dispatcher", settings.log_level)
    level = settings.log_level.lower()
    level = FAUST_LEVELS.get(level, level)
    # --quiet: no banner table on stdout; what it shows is this one line instead.
    get_logger("dispatcher").info(
        "dispatcher_starting",
        id=app.conf.id,
        broker=[str(url) for url in app.conf.broker],
        web=f"http://{app.conf.web_host}:{app.conf.web_port}",
        datadir=str(app.conf.datadir),
        faust=faust.__version__,
        pid=os.getpid(),
    )
    sys.argv = [sys.argv[0], "--quiet", "worker", "--loglevel", level, *sys.argv[1:]]
    app.main()


if __name__ == "__main__":
    main()
