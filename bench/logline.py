"""The cost of one of our log lines: the previous processor chain against the fused one.

    .venv/bin/python -m bench.logline [--lines 20000]

The line is the ingest's `event_published` (its trace, id and reference bound by
`bridge.correlation.correlated`), written to os.devnull so that what is measured is our own
work and the syscalls, not a terminal. Both run inside an asyncio loop, as in the services,
giving the loop `--per-iteration` lines between two turns (the loop's own cost is measured
alone and taken off). Prints microseconds per line (median of 5 rounds).

The previous chain is composed of today's pieces (its masking has the 9-digit pre-check);
`--before FILE` takes them from another bridge/logs.py instead, e.g. the one before issue 11:
`git show 06f2447:shared/bridge/logs.py > /tmp/logs_before.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import os
import statistics
import sys
import time
from types import ModuleType
from typing import Any, TextIO

import structlog

from bridge import logs, tracing
from bridge.correlation import correlated


def previous_processors(pieces: ModuleType = logs) -> list[Any]:
    """The chain our own lines went through before issue 11, composed of the same pieces
    (the reference the fused processor is compared with, here and in tests/unit/test_logs.py)."""
    return [
        structlog.contextvars.merge_contextvars,
        pieces._add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        pieces.redact,
        structlog.processors.JSONRenderer(serializer=pieces._dumps),
    ]


def use_previous_chain(stream: TextIO, pieces: ModuleType) -> None:
    """structlog as `configure_logging` set it up before issue 11 (a flush per line)."""
    structlog.configure(
        processors=previous_processors(pieces),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )


async def _lines(lines: int, per_iteration: int, log: Any) -> float:
    span = tracing.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    started = time.perf_counter()
    for index in range(lines):
        with correlated(
            span, event_id="6f1c2a5e-8d3b-5c47-9a2e-0b7d4e1f3a6c", reference="moniepoint:MNP-1"
        ):
            if log is not None:
                log.info("event_published", type="payment.successful")
        if index % per_iteration == per_iteration - 1:
            await asyncio.sleep(0)
    await asyncio.sleep(0)  # the last iteration's flush, inside the measure
    return time.perf_counter() - started


def per_line_us(lines: int, per_iteration: int, log: Any) -> float:
    rounds = [asyncio.run(_lines(lines, per_iteration, log)) for _ in range(5)]
    return statistics.median(rounds) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--per-iteration", type=int, default=1)
    parser.add_argument("--before", help="a bridge/logs.py to take the previous chain from")
    args = parser.parse_args()
    pieces = logs
    if args.before:
        spec = importlib.util.spec_from_file_location("logs_before", args.before)
        assert spec is not None and spec.loader is not None
        pieces = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pieces)
        pieces._service = "ingest"
    lines, per_iteration = args.lines, args.per_iteration
    console = sys.stdout
    with open(os.devnull, "w") as devnull:
        sys.stdout = devnull  # configure_logging writes to the stdout of the time
        try:
            logs.configure_logging("ingest", "INFO")
            harness = per_line_us(lines, per_iteration, None)
            use_previous_chain(devnull, pieces)
            before = per_line_us(lines, per_iteration, structlog.get_logger("ingest"))
            logs.configure_logging("ingest", "INFO")
            after = per_line_us(lines, per_iteration, logs.get_logger("ingest"))
        finally:
            sys.stdout = console
    print(
        f"{lines} lines, {per_iteration} per loop iteration, median of 5 rounds, µs per line"
        f" (the loop and correlated's own {harness:.2f} µs taken off)"
    )
    print(f"  previous chain (flush per line)   {before - harness:8.2f}   ({args.before or 'now'})")
    print(
        f"  fused                             {after - harness:8.2f}"
        f"   ({(before - harness) / (after - harness):.1f}x)"
    )


if __name__ == "__main__":
    main()
