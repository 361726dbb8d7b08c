"""The dispatcher: a faust agent that reads canonical events and hands each to its lane.

Run with `python -m dispatcher`. Orchestration only: the work is in pipeline.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import faust
import httpx
from pydantic import ValidationError
from redis.asyncio import Redis

from bridge.cache import new_redis
from bridge.config import Settings, get_settings
from bridge.db import connect
from bridge.events import CanonicalEvent, stable_key
from bridge.logs import get_logger
from bridge.metrics import EVENTS_PROCESSED, render

from .dedupe import Dedupe
from .directory import Directory
from .governor import Governor, GovernorConfig
from .lanes import Lanes
from .pipeline import Dispatcher
from .retry import RetryPolicy
from .rules import load_rules
from .siteti import SitetiClient

log = get_logger("dispatcher")
settings: Settings = get_settings()
INSTANCE = os.environ.get("DISPATCHER_INSTANCE", f"{socket.gethostname()}-{os.getpid()}")
DATADIR = Path(os.environ.get("DISPATCHER_DATADIR", f".stack/faust/{INSTANCE}"))
DATADIR.parent.mkdir(parents=True, exist_ok=True)  # faust makes only the last level

app = faust.App(
    # The consumer group: every instance of one deployment shares it.
    os.environ.get("DISPATCHER_GROUP_ID", "siteti-bridge-dispatcher"),
    broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
    key_serializer="raw",
    value_serializer="raw",
    web_port=settings.dispatcher_metrics_port,
    web_bind=os.environ.get("DISPATCHER_HOST", "127.0.0.1"),
    web_host=os.environ.get("DISPATCHER_HOST", "127.0.0.1"),
    datadir=str(DATADIR),
    # Stateless: all state lives in Redis and PostgreSQL, so no tables and no leader topic.
    topic_disable_leader=True,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=1.0,
)
events_topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)


@dataclass
class Runtime:
    pool: asyncpg.Pool
    redis: Redis
    http: httpx.AsyncClient
    dispatcher: Dispatcher


_runtime: Runtime | None = None


async def runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        pool = await connect(settings.database_url, max_size=settings.dispatcher_lanes + 4)
        redis = new_redis(settings.redis_url)
        http = httpx.AsyncClient(
            timeout=settings.siteti_timeout_seconds,
            limits=httpx.Limits(max_connections=settings.dispatcher_lanes * 2),
        )
        rules_file = os.environ.get("TEMPLATE_RULES_FILE")
        dispatcher = Dispatcher(
            pool=pool,
            directory=Directory(
                pool, redis, settings.customer_cache_ttl_seconds, settings.default_country
            ),
            rules=load_rules(Path(rules_file) if rules_file else None),
            siteti=SitetiClient(
                http,
                settings.siteti_base_url,
                settings.siteti_api_key,
                settings.siteti_signing_secret,
                Governor(
                    redis,
                    GovernorConfig(
                        settings.siteti_rate_limit_per_minute,
                        # The plan limit is per Siteti account: so is the schedule.
                        key_prefix=f"bridge:governor:{stable_key(settings.siteti_base_url)}",
                    ),
                ),
            ),
            dedupe=Dedupe(
                redis,
                lease_seconds=settings.dedupe_lease_seconds,
                ttl_seconds=settings.dedupe_ttl_seconds,
            ),
            policy=RetryPolicy(
                settings.siteti_retry_base_seconds,
                settings.siteti_retry_factor,
                settings.siteti_retry_max_seconds,
                settings.siteti_max_retries,
            ),
            instance_id=f"{INSTANCE}-{uuid.uuid4().hex[:8]}",
            missing_contact_wait_seconds=settings.missing_contact_wait_seconds,
        )
        _runtime = Runtime(pool, redis, http, dispatcher)
    return _runtime


def parse(record: Any) -> CanonicalEvent | None:
    try:
        return CanonicalEvent.from_json(record.value)
    except ValidationError as exc:
        # Not ours to fix here: the producer that wrote it must. Counted, logged, skipped.
        EVENTS_PROCESSED.labels("invalid", "rejected").inc()
        log.error("invalid_canonical_event", offset=record.message.offset, error=str(exc)[:500])
        return None


async def process(event: CanonicalEvent) -> None:
    """Settle one event. Infrastructure failures (PostgreSQL, Redis down) are retried here
    until they pass: an event is never acked unsettled."""
    rt = await runtime()
    delay = 0.5
    while True:
        try:
            await rt.dispatcher.handle(event)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("infrastructure_error_retrying", reference=event.reference, error=repr(exc))
        except Exception as exc:  # a bug must not drop the event: log and retry
            log.exception("unexpected_error_retrying", reference=event.reference, error=repr(exc))
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


@app.agent(events_topic)
async def dispatch(stream: AsyncIterable[Any]) -> None:
    await runtime()
    # Separate lanes per priority: a reminder waiting for budget never holds up a payment
    # confirmation queued behind it; within a priority, one customer's events keep their order.
    lanes = {
        "transactional": Lanes(settings.dispatcher_lanes, process),
        "bulk": Lanes(max(1, settings.dispatcher_lanes // 4), process, depth=1000),
    }
    try:
        async for record in stream.noack().events():  # type: ignore[attr-defined]
            event = parse(record)
            if event is None:
                record.ack()
                continue
            await lanes[event.priority].submit(record.key, event, record.ack)
    finally:
        grace = settings.dispatcher_shutdown_grace_seconds
        await asyncio.gather(*(pool.drain(grace) for pool in lanes.values()))


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    return web.json({"status": "ok", "instance": INSTANCE})


@app.page("/readyz")
async def readyz(web: Any, request: Any) -> Any:
    if _runtime is None:
        return web.json({"status": "starting"}, status=503)
    try:
        await _runtime.pool.fetchval("SELECT 1")
        await _runtime.redis.ping()
    except Exception as exc:
        return web.json({"status": "not ready", "error": repr(exc)}, status=503)
    return web.json({"status": "ready", "instance": INSTANCE})


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    payload, content_type = render()
    return web.bytes(payload, content_type=content_type)
