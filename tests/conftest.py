"""Fixtures that connect to the real local stack (`make stack-up` writes `.stack/env`).

Integration tests never fall back to fakes: when the stack is not up they fail, saying so.
They never publish to the production topic names either: the session's canonical events go to
a topic of its own (EVENTS_TOPIC, set here before any setting is read), dropped at the end, so
a dispatcher started by `make up` never sees a test's events.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from bridge.cache import new_redis
from bridge.config import Settings, get_settings
from bridge.db import connect
from bridge.events import EVENTS_TOPIC
from bridge.kafka import new_producer
from bridge.protect import new_key_entry

# Helpers that assert on the tests' behalf: pytest explains their failures as it does the
# tests' own asserts.
pytest.register_assert_rewrite("tests.e2e.harness", "tests.governor_tools", "tests.provider_tools")

_SESSION = uuid.uuid4().hex[:12]
# The session's data-protection keys (every process the tests start inherits them): fresh,
# so nothing a test stores is readable with another run's keys.
os.environ.setdefault("BRIDGE_DATA_KEYS", new_key_entry(f"t{_SESSION[:6]}"))
os.environ.setdefault("BRIDGE_INDEX_KEY", base64.b64encode(os.urandom(32)).decode())
os.environ["EVENTS_TOPIC"] = f"test.bridge.events.{_SESSION}"
# The stack's database is where `make up` keeps its state; the session works in its own.
_STACK_DATABASE_URL = Settings().database_url
os.environ["DATABASE_URL"] = (
    urlsplit(_STACK_DATABASE_URL)._replace(path=f"/bridge_test_{_SESSION}").geturl()
)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(urlsplit(_STACK_DATABASE_URL)._replace(path="/postgres").geturl())
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def session_database() -> Iterator[None]:
    """Create the session's database (unit tests run without a stack: then it is skipped here,
    and any test that needs PostgreSQL fails in `pg_pool`, saying why)."""
    name = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError):
        yield
        return
    yield
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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


@pytest.fixture(scope="module")
async def producer(kafka_bootstrap: str, events_topic: str) -> AsyncIterator[AIOKafkaProducer]:
    """The project's own producer (acks=all, idempotent), with the session's topic in place."""
    producer = new_producer(kafka_bootstrap)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
async def events_topic(kafka_bootstrap: str, settings: Settings) -> AsyncIterator[str]:
    """The session's own canonical-events topic (EVENTS_TOPIC), as partitioned as the real one."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(settings.events_topic, EVENTS_TOPIC.partitions, 1)])
        yield settings.events_topic
        await admin.delete_topics([settings.events_topic])
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client for the module's tests."""
    client = new_redis(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def two_clients(settings: Settings) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two Redis connections: two instances racing for the same keys."""
    a, b = Redis.from_url(settings.redis_url), Redis.from_url(settings.redis_url)
    yield a, b
    await a.aclose()
    await b.aclose()
