"""`python -m ingest.sources {poller|filedrop} [--once]`: run one source without webhooks.

`poller` polls POLLER_QUERY every POLLER_INTERVAL_SECONDS; `filedrop` watches FILEDROP_DIR (on
arrival, or at FILEDROP_SCHEDULE). `--once` does one poll (or one scan until every file present
is handled) and exits: handy from cron or by hand. Both stop cleanly on SIGTERM, finishing the
batch or file in hand.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bridge.config import get_settings
from bridge.logs import configure_logging

from . import filedrop, poller


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.sources", description="Sources without webhooks."
    )
    parser.add_argument("source", choices=("poller", "filedrop"))
    parser.add_argument("--once", action="store_true", help="one poll or scan, then exit")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(f"ingest-{args.source}", settings.log_level)
    runner = poller.run if args.source == "poller" else filedrop.run
    sys.exit(asyncio.run(runner(settings, once=args.once)))


if __name__ == "__main__":
    main()
