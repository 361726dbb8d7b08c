"""CPU per webhook of ingest's ASGI app alone, against the bare ASGI + Kafka app.

    .venv/bin/python -m bench.app_cpu [--webhooks 20000] [--in-flight 500] [--profile FILE]

No server, no sockets, no load tool: each app is driven in this process (on uvloop, as
uvicorn serves ingest), `--in-flight`
signed Moniepoint webhooks at a time, each a real ASGI request (scope, receive, send)
through the app with its real settings and Kafka producer (the stack's broker, acks=all,
a topic of the run's own). What is measured is this process's CPU time (`process_time`)
per webhook, after a warm-up of a tenth of the webhooks. wrk's figures (`bench.ceiling`)
move with everything else on a shared machine and include uvicorn; this one is the app's
own cost, the figure to compare when changing the webhook path. `--profile FILE` writes a
cProfile of ingest's measured run (read it with `python -m pstats FILE`).

Needs the local stack (`make stack-up`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from bridge.config import Settings
from bridge.kafka import client_options
from bridge.logs import configure_logging
from ingest.app import create_app
from tests.e2e.harness import create_topic, delete_topic

from .ceiling import PATH, KafkaApp, ingest_env, signed_webhooks

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def post(app: App, body: bytes, signature: str) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-moniepoint-signature", signature.encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise SystemExit(f"the app answered {statuses}, not 200")


async def lifespan(app: App) -> Callable[[], Awaitable[None]]:
    """Start the app (its producer); returns its shutdown."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()

    async def send(message: dict[str, str]) -> None:
        if message["type"].endswith(".failed"):
            raise SystemExit(f"the app's lifespan failed: {message}")
        (started if message["type"] == "lifespan.startup.complete" else stopped).set()

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    await started.wait()

    async def shutdown() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await stopped.wait()
        await task

    return shutdown


async def cpu_per_webhook(
    app: App, signed: list[tuple[bytes, str]], in_flight: int, profile: Path | None
) -> tuple[float, float]:
    """(µs of CPU per webhook, webhooks/s) over the measured part."""
    shutdown = await lifespan(app)
    try:

        async def run(part: list[tuple[bytes, str]]) -> tuple[float, float]:
            queue = iter(part)

            async def client() -> None:
                for body, signature in queue:
                    await post(app, body, signature)

            wall, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(client() for _ in range(in_flight)))
            return time.perf_counter() - wall, time.process_time() - cpu

        warm = len(signed) // 10
        await run(signed[:warm])
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        wall, cpu = await run(signed[warm:])
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        measured = len(signed) - warm
        return cpu / measured * 1e6, measured / wall
    finally:
        await shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--webhooks", type=int, default=20000)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--profile", type=Path, help="cProfile of ingest's measured run")
    args = parser.parse_args()

    env, secret = ingest_env("app-cpu")
    os.environ.update(env)
    topic = env["EVENTS_TOPIC"]
    settings = Settings()
    # Lines to /dev/null: their cost is counted, not a terminal's.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    configure_logging("ingest", "INFO")
    kafka = client_options(settings)
    signed = signed_webhooks(args.webhooks, secret)
    ingest_app = create_app(settings)
    gc.freeze()  # as `bridge.edge.serve` does before serving: the start-up heap out of the GC

    async def both() -> None:
        await create_topic(settings.kafka_bootstrap_servers, topic, **kafka)
        try:
            bare, bare_rate = await cpu_per_webhook(KafkaApp(topic), signed, args.in_flight, None)
            ingest, rate = await cpu_per_webhook(ingest_app, signed, args.in_flight, args.profile)
        finally:
            await delete_topic(settings.kafka_bootstrap_servers, topic, **kafka)
        print(
            f"{len(signed)} webhooks, {args.in_flight} in flight, load {os.getloadavg()[0]:.2f}\n"
            f"bare ASGI + Kafka: {bare:6.0f} µs CPU per webhook ({bare_rate:,.0f}/s)\n"
            f"ingest's app:      {ingest:6.0f} µs CPU per webhook ({rate:,.0f}/s),"
            f" {ingest / bare:.1f}× the bare app",
            file=sys.stderr,
        )

    # uvloop, as uvicorn runs ingest (its `auto` loop): timers and callbacks cost otherwise.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(both())


if __name__ == "__main__":
    main()
