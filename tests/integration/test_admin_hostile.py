"""The dispatcher's admin API (the real faust pages on aiohttp's test server, real PostgreSQL
and Redis) under hostile input: every bad path, query, header or body is a 4xx with a message,
never a 5xx.

The pages work on a database of this module's own, holding one dead-letter entry, so a
generated bulk retry can never touch anyone else's entries.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import asyncpg
import faust
import httpx
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from bridge.cache import new_redis
from bridge.config import Settings
from bridge.db import connect
from bridge.events import Customer, EventData, new_event
from bridge.protect import data_keys
from bridge.retry import RetryPolicy
from dispatcher import dlq
from dispatcher.admin import register_admin
from dispatcher.dedupe import Dedupe
from dispatcher.directory import Directory
from dispatcher.erasure_api import register_erasures
from dispatcher.outcomes import DeadLettered
from dispatcher.pipeline import Dispatcher
from dispatcher.rules import load_rules
from dispatcher.siteti import SitetiClient
from tests.conftest import free_port
from tests.problem_tools import problem_detail

pytestmark = pytest.mark.integration

TOKEN = "admin-hostile-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[Any, Any]


class _Runtime:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, dispatcher: Dispatcher) -> None:
        self.pool = pool
        self.redis = redis
        self.dispatcher = dispatcher


async def _admin_sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(urlsplit(dsn)._replace(path="/postgres").geturl())
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module")
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """A database of the module's own (test_access.py's too: it imports these fixtures)."""
    name = f"bridge_admin_pages_{uuid.uuid4().hex[:10]}"
    await _admin_sql(settings.database_url, f'CREATE DATABASE "{name}"')
    yield urlsplit(settings.database_url)._replace(path=f"/{name}").geturl()
    await _admin_sql(settings.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await connect(database_url)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="module")
async def entry_id(pool: asyncpg.Pool) -> int:
    data = EventData(
        provider="adminhostile",
        transaction_reference=f"TX-{uuid.uuid4().hex[:10]}",
        amount=Decimal("5000.00"),
        customer=Customer(account_number="0123456789", name="Ada Obi"),
    )
    return await dlq.put(
        pool,
        new_event(data, "payment.successful"),
        DeadLettered("missing_contact", "manual_review", "no phone number"),
        "customer-hash",
    )


@asynccontextmanager
async def admin_pages(
    pool: asyncpg.Pool, settings: Settings, datadir: Path
) -> AsyncIterator[Client]:
    """The real /dlq and /erasures pages (the web server of a faust app that is never started)
    over `pool` on aiohttp's test server, `settings` giving the tokens. Siteti is nowhere: a
    retry that gets as far as sending fails fast, harmlessly."""
    redis = new_redis(settings.redis_url)
    http = httpx.AsyncClient(timeout=2)
    dispatcher = Dispatcher(
        pool=pool,
        directory=Directory(pool, redis, data_keys(settings), 300, "NG"),
        rules=load_rules(None),
        siteti=SitetiClient(http, f"http://127.0.0.1:{free_port()}/v2.6", "key", "secret"),
        dedupe=Dedupe(redis, lease_seconds=30, ttl_seconds=60),
        policy=RetryPolicy(base_seconds=0.01, factor=2, max_seconds=1, max_retries=0),
        instance_id=f"adminpages-{uuid.uuid4().hex[:6]}",
        missing_contact_wait_seconds=0,
    )
    runtime = _Runtime(pool, redis, dispatcher)

    async def get_runtime() -> _Runtime:
        return runtime

    app = faust.App(
        f"admin-pages-{uuid.uuid4().hex[:6]}",
        broker="kafka://127.0.0.1:9",  # never started: only its web pages are used
        web_port=8002,
        datadir=str(datadir),
    )
    register_admin(app, get_runtime, settings)
    register_erasures(app, get_runtime, settings)
    client: Client = TestClient(TestServer(cast(Any, app.web).web_app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await http.aclose()
        await redis.aclose()


@pytest_asyncio.fixture(scope="module")
async def api(
    pool: asyncpg.Pool, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    tokens = settings.model_copy(update={"api_tokens": [], "admin_api_tokens": [TOKEN]})
    async with admin_pages(pool, tokens, tmp_path_factory.mktemp("faust")) as client:
        yield client


async def call(
    api: Client,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    params: Any = None,
) -> tuple[int, Any]:
    response = await api.request(
        method, path, data=body, headers=AUTH if headers is None else headers, params=params
    )
    text = await response.text()
    assert response.status < 500, (
        f"{method} {path} {params!r} {body!r:.200}: {response.status} {text}"
    )
    if response.status >= 400:
        # A problem saying what is wrong, the web server's own 404 and 405 included.
        problem_detail(response.status, response.content_type, orjson.loads(text))
    return response.status, text


def routes(entry: int) -> list[tuple[str, str]]:
    return [
        ("GET", "/dlq"),
        ("POST", "/dlq/retry"),
        ("GET", f"/dlq/{entry}"),
        ("POST", f"/dlq/{entry}/retry"),
        ("POST", f"/dlq/{entry}/resolve"),
        ("POST", f"/dlq/{entry}/close"),
    ]


# The aggregate page: no id, and only a window to filter by.
STATS = ("GET", "/dlq/stats")

BAD_IDS = [
    "0",
    "00",
    "9" * 19,
    "9223372036854775808",
    "99999999999999999999999999",
    "9" * 5000,
    "%D9%A1",  # ARABIC-INDIC DIGIT ONE: matches the route's \d
    "%EF%BC%91",  # FULLWIDTH DIGIT ONE
    "-1",
    "1e3",
    "1.0",
    "%00",
    "abc",
]

BAD_BODIES = [
    b"not json",
    b"\xff\xfe\x00",
    b"[" * 100_000,
    b'{"a":' * 50_000,
    b"1" * 5000,
    b"NaN",
    b'{"limit": Infinity}',
    b'"\\ud800"',
    b"null",
    b"[]",
    b"42",
    b'{"note": null}',
    b'{"note": 5}',
    b'{"note": "\\u0000"}',
    b'{"note": "\\ud800"}',
    b'{"note": "' + b"x" * 100_000 + b'"}',
    b'{"note": ["a"]}',
    b'{"limit": 1e400}',
    b'{"limit": 99999999999999999999999}',
    b'{"limit": -1}',
    b'{"limit": 0.5}',
    b'{"limit": true}',
    b'{"status": {"a": 1}}',
    b'{"status": [1, 2]}',
    b'{"status": "bogus"}',
    b'{"provider": "\\u0000"}',
    b'{"reason": "\\udfff"}',
    b'{"older_than": "999999999999d"}',
    b'{"older_than": "' + b"9" * 400 + b'"}',
    b'{"newer_than": "1e400s"}',
    b'{"newer_than": "99999w"}',
    b'{"older_than": -5}',
    b'{"provider": "' + b"p" * 100_000 + b'"}',
]

BAD_QUERIES: list[dict[str, str]] = [
    {"limit": "99999999999999999999"},
    {"limit": "9223372036854775807"},
    {"limit": "-1"},
    {"limit": "x"},
    {"older_than": "9999999999999999w"},
    {"older_than": "9" * 400},
    {"newer_than": "nan"},
    {"provider": "\x00"},
    {"reason": "a\x00b"},
    {"status": "bogus"},
    {"provider": "p" * 5000},
]

BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic " + TOKEN},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer " + "a" * 4000},
]


async def test_bad_ids_are_404_on_every_id_route(api: Client, entry_id: int) -> None:
    for bad in BAD_IDS:
        for method, path in routes(entry_id)[2:]:
            status, _ = await call(api, method, path.replace(str(entry_id), bad, 1), body=b"{}")
            assert status in (400, 404), (method, path, bad)
    # A well-formed id that does not exist is 404 with its id.
    status, text = await call(api, "GET", "/dlq/9223372036854775807")
    assert status == 404 and orjson.loads(text)["id"] == 9223372036854775807


async def test_bad_bodies_are_400(api: Client, entry_id: int) -> None:
    for body in BAD_BODIES:
        for method, path in routes(entry_id):
            if method == "POST":
                await call(api, method, path, body=body)
    status, _ = await call(api, "POST", f"/dlq/{entry_id}/resolve", body=b'{"note": "\\u0000"}')
    assert status == 400


async def test_bad_queries_are_400(api: Client, entry_id: int) -> None:
    for params in BAD_QUERIES:
        status, text = await call(api, "GET", "/dlq", params=params)
        assert status == 400, (params, text)
        await call(api, "POST", "/dlq/retry", params=params)
    for window in ("2x", "\x00", "1e9w", "99999999d", "-1h"):
        status, text = await call(api, *STATS, params={"newer_than": window})
        assert status == 400, (window, text)


async def test_bad_auth_headers_are_401(api: Client, entry_id: int) -> None:
    for headers in BAD_AUTH:
        for method, path in [*routes(entry_id), STATS]:
            status, _ = await call(api, method, path, headers=headers)
            assert status == 401, (method, path, headers)


async def test_header_bytes_that_are_not_utf8_are_401(api: Client) -> None:
    # aiohttp's client will not send such a header; a raw socket will.
    assert api.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", api.server.port)
    writer.write(
        b"GET /dlq HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\x80\r\n"
        b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401", status_line


async def test_other_methods_are_405(api: Client, entry_id: int) -> None:
    for method in ("PUT", "DELETE", "PATCH", "PROPFIND", "TRACE"):
        for _, path in [*routes(entry_id), STATS]:
            status, text = await call(api, method, path)
            assert status == 405, (method, path)
            assert "is not allowed here; allowed:" in orjson.loads(text)["detail"]


async def test_a_path_that_is_no_route_is_a_problem_too(api: Client) -> None:
    for path in ("/dlq/abc", "/nothing-here", "/dlq/1/unknown"):
        status, text = await call(api, "GET", path)
        assert status == 404, path
        assert "GET /dlq/openapi.json" in orjson.loads(text)["detail"]


# --- generated input -------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["pending", "manual_review", "90s", "1d", "1e9w", "-1", "\x00"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
filter_bodies = st.dictionaries(
    st.sampled_from(["status", "reason", "provider", "older_than", "newer_than", "limit", "note"]),
    json_values,
    max_size=4,
)
queries = st.dictionaries(
    st.sampled_from(["status", "reason", "provider", "older_than", "newer_than", "limit", "x"]),
    st.text(max_size=30),
    max_size=4,
)
HYPOTHESIS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


@HYPOTHESIS
@given(
    body=st.one_of(filter_bodies, json_values).map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
)
async def test_generated_bodies_are_never_5xx(api: Client, entry_id: int, body: bytes) -> None:
    # Only routes that act on the module's own entry (its provider filter keeps bulk retries
    # to that database's one entry; it is already closed or resolved by then, or not).
    for method, path in routes(entry_id)[1:]:
        if method == "POST":
            await call(api, method, path, body=body)


@HYPOTHESIS
@given(params=queries)
async def test_generated_queries_are_never_5xx(
    api: Client, entry_id: int, params: dict[str, str]
) -> None:
    await call(api, "GET", "/dlq", params=params)
    await call(api, "POST", "/dlq/retry", params=params)
    await call(api, *STATS, params=params)


@HYPOTHESIS
@given(raw=st.text(min_size=1, max_size=30))
async def test_generated_ids_are_never_5xx(api: Client, entry_id: int, raw: str) -> None:
    segment = quote(raw, safe="")
    for method, path in routes(entry_id)[2:]:
        await call(api, method, path.replace(str(entry_id), segment, 1), body=b"{}")
