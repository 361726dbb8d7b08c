"""Redis adapter: one client (connection pool) per process."""

from __future__ import annotations

from redis.asyncio import Redis


def new_redis(url: str) -> Redis:
    return Redis.from_url(url, decode_responses=False, health_check_interval=30)
