"""`python -m ingest`: serve the webhook endpoints on INGEST_HOST:INGEST_PORT, in
INGEST_WORKERS processes (default: one per CPU this process may use).

One process uses one core (Python runs one thread of bytecode at a time). With several, the
workers share the port (uvicorn's supervisor restarts one that dies), each with its own
Kafka producer and concurrency cap, and `/metrics` adds up all of them (prometheus_client's
multiprocess mode, in a directory of this run's own).
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile

from fastapi import FastAPI

from bridge.config import Settings, get_settings
from bridge.edge import serve
from bridge.logs import configure_logging
from bridge.metrics import MULTIPROCESS_DIR

from .app import create_app


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), not all the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(settings: Settings) -> int:
    return settings.ingest_workers or usable_cpus()


def worker_app() -> FastAPI:
    """One worker's app (uvicorn's factory, run in each worker process)."""
    settings = get_settings()
    configure_logging("ingest", settings.log_level)
    app = create_app(settings)
    gc.freeze()  # as `serve` does for one process: see there
    return app


def main() -> None:
    settings = get_settings()
    configure_logging("ingest", settings.log_level)
    # A configuration ingest cannot work with stops the start here, once, saying what to fix
    # (not in every worker, which the supervisor would start again and again).
    app = create_app(settings)
    options = {
        "log_level": "warning",
        # TRUSTED_PROXIES alone decides whose X-Forwarded-For is believed (ingest.defences);
        # uvicorn's own handling would believe any local peer's.
        "proxy_headers": False,
    }
    workers = worker_count(settings)
    if workers == 1:
        serve(app, settings.ingest_host, settings.ingest_port, **options)
        return
    metrics_dir = tempfile.mkdtemp(prefix="ingest-metrics-")
    os.environ[MULTIPROCESS_DIR] = metrics_dir  # inherited by the workers, read at import
    try:
        serve(
            "ingest.__main__:worker_app",
            settings.ingest_host,
            settings.ingest_port,
            factory=True,
            workers=workers,
            **options,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
