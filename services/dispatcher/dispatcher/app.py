"""The dispatcher: a faust agent that reads canonical events and hands each to its lane.

Run with `python -m dispatcher`. Orchestration only: the work is in pipeline.py.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import faust

from bridge.audit import relay_outbox
from bridge.config import Settings, get_settings
from bridge.edge import Readiness
from bridge.events import REPLIES_TOPIC
from bridge.kafka import client_options, faust_credentials
from bridge.logs import get_logger, logging_config
from bridge.metrics import render

from .admin import register_admin
from .erasure_api import register_erasures
from .gauges import Gauges, LagReader
from .lanes import Lanes
from .offsets import OffsetLedger
from .records import Work, read, settle
from .recovery import Retrier
from .replies import Replies
from .retention import run_periodically
from .runtime import Runtime, build_runtime, shared_governor

log = get_logger("dispatcher")
settings: Settings = get_settings()
INSTANCE = settings.dispatcher_instance
DATADIR = Path(settings.dispatcher_datadir)
DATADIR.parent.mkdir(parents=True, exist_ok=True)  # faust makes only the last level


class Worker(faust.Worker):
    """faust's worker without its terminal spinner. At WARNING and above the spinner sets the
    root logger to DEBUG to feed itself, so every library's debug record (httpcore's, a few
    per Siteti call) was built and thrown away: a tenth of the CPU of an event (issue 11).
    Its escape codes also ended up in the JSON log."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None


app = faust.App(
    # The consumer group: every instance of one deployment shares it.
    settings.dispatcher_group_id,
    broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
    broker_credentials=faust_credentials(settings),
    key_serializer="raw",
    value_serializer="raw",
    web_port=settings.dispatcher_metrics_port,
    web_bind=settings.dispatcher_host,
    web_host=settings.dispatcher_host,
    datadir=str(DATADIR),
    # Stateless: all state lives in Redis and PostgreSQL, so no tables and no leader topic.
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
    broker_session_timeout=settings.dispatcher_session_timeout_seconds,
    broker_heartbeat_interval=settings.dispatcher_heartbeat_interval_seconds,
    # faust would hold a rebalance until every record in the lanes is settled (tens of
    # seconds behind the rate governor), keeping a dead instance's partitions unread. It need
    # not: the ledger forgets revoked partitions, in-flight work finishes under its dedupe
    # lease, and the records read again after the rebalance are recognised as duplicates.
    stream_wait_empty=False,
    # faust's worker configures logging itself: with this, every record (faust, aiokafka,
    # aiohttp, ours) is one JSON line (bridge.logs), and its stdout redirect turns a stray
    # print into one too.
    logging_config=logging_config(settings.log_level),
    Worker=Worker,
)
events_topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
replies_topic = app.topic(REPLIES_TOPIC.name, key_type=bytes, value_type=bytes)


_runtime: Runtime | None = None
# The tasks below and the agent ask for the runtime at once on start: one of them builds it.
_runtime_lock = asyncio.Lock()


async def runtime() -> Runtime:
    global _runtime
    if _runtime is not None:  # every event asks: no lock once it is built
        return _runtime
    async with _runtime_lock:
        if _runtime is None:
            _runtime = await build_runtime(
                settings, instance_id=f"{INSTANCE}-{uuid.uuid4().hex[:8]}"
            )
    return _runtime


async def dlq_retrier() -> None:
    """Works the dead-letter store every DLQ_RETRY_INTERVAL_SECONDS (entries are claimed, so
    one worker an entry across instances)."""
    rt = await runtime()
    await Retrier(rt.dispatcher, interval_seconds=settings.dlq_retry_interval_seconds).run()


async def outbox_relay() -> None:
    """Relays the outbox (the dead-letter and audit rows written here) to Kafka, so they go
    out whether receipts runs or not; relays in other processes skip the rows this one holds."""
    rt = await runtime()
    await relay_outbox(
        rt.pool, settings.kafka_bootstrap_servers, kafka_options=client_options(settings)
    )


async def retention() -> None:
    """Deletes what is older than RETENTION_DAYS every RETENTION_INTERVAL_SECONDS, one round
    per interval across instances (a Redis lease and round marker; see retention.py)."""
    rt = await runtime()
    await run_periodically(
        rt.pool,
        rt.redis,
        Path(settings.filedrop_dir),
        days=settings.retention_days,
        interval_seconds=settings.retention_interval_seconds,
        owner=INSTANCE,
    )


async def gauges() -> None:
    """Refreshes the gauges of shared state (dead letters, outbox, erasures, the governor's
    pause) and this instance's consumer lag every METRICS_REFRESH_SECONDS (see gauges.py)."""
    rt = await runtime()
    lag = LagReader(app.consumer, settings)
    await Gauges(rt.pool, shared_governor(settings, rt.redis), lag).run(
        settings.metrics_refresh_seconds
    )


app.task(dlq_retrier)
app.task(outbox_relay)
app.task(retention)
app.task(gauges)
register_admin(app, runtime, settings)
register_erasures(app, runtime, settings)

# Offsets are committed only up to the first record not yet settled (see offsets.py).
ledger = OffsetLedger()


@app.on_partitions_revoked.connect
async def forget_revoked(_app: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
    (revoked,) = args  # the set of partitions this instance no longer owns
    ledger.forget(revoked)


async def settle_work(work: Work) -> None:
    rt = await runtime()
    await settle(rt.dispatcher, work, poison_attempts=settings.dispatcher_poison_attempts)


@app.agent(events_topic)
async def dispatch(stream: AsyncIterable[Any]) -> None:
    await runtime()
    # Separate lanes per priority: a reminder waiting for budget never holds up a payment
    # confirmation queued behind it; within a priority, one customer's events keep their order.
    lanes = {
        "transactional": Lanes(settings.dispatcher_lanes, settle_work),
        "bulk": Lanes(max(1, settings.dispatcher_lanes // 4), settle_work, depth=1000),
    }
    try:
        async for record in stream.noack().events():  # type: ignore[attr-defined]
            tp, offset, ack = record.message.tp, record.message.offset, record.ack
            ledger.received(tp, offset, ack)
            work = read(record)
            priority = work.event.priority if work.event else "transactional"
            await lanes[priority].submit(
                record.key, work, functools.partial(ledger.settled, tp, offset, ack)
            )
    finally:
        grace = settings.dispatcher_shutdown_grace_seconds
        await asyncio.gather(*(pool.drain(grace) for pool in lanes.values()))


@app.agent(replies_topic)
async def confirm_numbers(stream: AsyncIterable[Any]) -> None:
    """Customers' replies that answer a number confirmation (replies.py), one at a time."""
    replies = Replies((await runtime()).dispatcher)
    async for value in stream:
        await replies.handle(value)


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    return web.json({"status": "ok", "instance": INSTANCE})


async def ready() -> Readiness:
    if _runtime is None:
        return Readiness(False, {"status": "starting"})
    try:
        await _runtime.pool.fetchval("SELECT 1")
        await _runtime.redis.ping()
    except Exception as exc:
        return Readiness(False, {"status": "not ready", "error": repr(exc)})
    return Readiness(True, {"status": "ready", "instance": INSTANCE})


@app.page("/readyz")
async def readyz(web: Any, request: Any) -> Any:
    answer = await ready()
    return web.json(answer.body, status=answer.status_code)


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    payload, content_type = render()
    # As a header: aiohttp refuses a content_type argument with a charset (Prometheus's has).
    return web.bytes(payload, headers={"Content-Type": content_type})
