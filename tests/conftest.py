"""Fixtures that connect to the real local stack (`make stack-up` writes `.stack/env`).

Integration tests never fall back to fakes: when the stack is not up they fail, saying so.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from redis.asyncio import Redis

from bridge.config import Settings, get_settings
from bridge.db import connect


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def pg_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    try:
        pool = await asyncio.wait_for(connect(settings.database_url, max_size=20), 15)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"PostgreSQL at DATABASE_URL is not reachable ({exc}); run `make stack-up`")
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis_client(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    try:
        await asyncio.wait_for(client.ping(), 5)
    except (OSError, TimeoutError) as exc:
        pytest.fail(f"Redis at REDIS_URL is not reachable ({exc}); run `make stack-up`")
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings) -> Iterator[str]:
    host, _, port = settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        pytest.fail(
            f"Kafka at KAFKA_BOOTSTRAP_SERVERS is not reachable ({exc}); run `make stack-up`"
        )
    yield settings.kafka_bootstrap_servers
