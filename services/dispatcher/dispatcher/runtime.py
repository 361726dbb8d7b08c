"""The dispatcher's connections and pipeline, built one way for the faust app, the retrier
and the `bridge dlq` CLI alike."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from bridge.cache import new_redis
from bridge.config import Settings
from bridge.db import connect
from bridge.events import stable_key
from bridge.protect import data_keys
from bridge.retry import RetryPolicy

from .dedupe import Dedupe
from .directory import Directory
from .doublefire import DoubleFires
from .governor import Governor, GovernorConfig
from .pacing import Pacer
from .pipeline import Dispatcher
from .rules import configured_rules_file, load_rules
from .siteti import (
    GovernedTransport,
    MeteredTransport,
    SitetiAuth,
    SitetiClient,
    SitetiKeys,
    listed_keys,
)


@dataclass
class Runtime:
    pool: asyncpg.Pool
    redis: Redis
    http: httpx.AsyncClient
    dispatcher: Dispatcher

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.redis.aclose()
        await self.pool.close()


def build_dispatcher(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    redis: Redis,
    http: httpx.AsyncClient,
    keys: SitetiKeys,
    instance_id: str,
    rules_file: Path | None = None,
) -> Dispatcher:
    """The pipeline over existing connections, configured from `settings`. Siteti calls go
    through `http`: build it with `siteti_http` and the same `keys` so that they are
    rate-governed, metered and signed with the key in use."""
    keys_of_data = data_keys(settings)
    return Dispatcher(
        pool=pool,
        directory=Directory(
            pool,
            redis,
            keys_of_data,
            settings.customer_cache_ttl_seconds,
            settings.default_country,
        ),
        rules=load_rules(rules_file or configured_rules_file(settings.template_rules_file)),
        siteti=SitetiClient(
            http,
            settings.siteti_base_url,
            keys,
            settings.siteti_signing_secret,
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
        instance_id=instance_id,
        missing_contact_wait_seconds=settings.missing_contact_wait_seconds,
        number_confirmation_timeout=settings.number_confirmation_timeout,
        pacer=Pacer(
            redis,
            keys_of_data,
            interval_seconds=settings.pair_min_interval_seconds,
            # The pair limit is per business number, i.e. per Siteti account (as the governor).
            prefix=f"bridge:pace:{stable_key(settings.siteti_base_url)}",
        ),
        double_fires=DoubleFires(redis, window_seconds=settings.double_fire_window_seconds),
    )


def siteti_keys(settings: Settings) -> SitetiKeys:
    """`SITETI_API_KEYS` (or `SITETI_API_KEY`), the first in use: one ring per process."""
    return SitetiKeys(listed_keys(settings.siteti_api_keys, settings.siteti_api_key))


def shared_governor(settings: Settings, redis: Redis) -> Governor:
    """The rate governor every instance calling the configured Siteti account shares."""
    return Governor(
        redis,
        GovernorConfig(
            settings.siteti_rate_limit_per_minute,
            # The plan limit is per Siteti account: so is the shared schedule.
            key_prefix=f"bridge:governor:{stable_key(settings.siteti_base_url)}",
        ),
    )


def siteti_http(
    settings: Settings, redis: Redis, keys: SitetiKeys, *, max_connections: int
) -> httpx.AsyncClient:
    """The HTTP client for Siteti: the shared rate governor, then metrics, then the wire."""
    governor = shared_governor(settings, redis)
    wire = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections))
    auth = SitetiAuth(keys, settings.siteti_signing_secret)
    return httpx.AsyncClient(
        timeout=settings.siteti_timeout_seconds,
        transport=GovernedTransport(MeteredTransport(wire), governor, on_slot=auth.sign),
        # No proxies from the environment: httpx would mount them beside this transport, and
        # calls through them would skip the governor.
        trust_env=False,
    )


async def build_runtime(
    settings: Settings,
    *,
    instance_id: str | None = None,
    pool_size: int | None = None,
    http_connections: int | None = None,
    rules_file: Path | None = None,
) -> Runtime:
    """PostgreSQL pool (schema applied), Redis, an HTTP client and the Dispatcher.
    Close with `await runtime.aclose()`."""
    pool = await connect(settings.database_url, max_size=pool_size or settings.dispatcher_lanes + 4)
    redis = new_redis(settings.redis_url)
    keys = siteti_keys(settings)
    http = siteti_http(
        settings, redis, keys, max_connections=http_connections or settings.dispatcher_lanes * 2
    )
    dispatcher = build_dispatcher(
        settings,
        pool=pool,
        redis=redis,
        http=http,
        keys=keys,
        instance_id=instance_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}",
        rules_file=rules_file,
    )
    return Runtime(pool, redis, http, dispatcher)
