"""GovernedTransport against the real Redis, with httpx.MockTransport for Siteti: every call
takes a governor slot, confirmations go before bulk, Siteti's "not now" pauses every instance,
and a request that waited is signed at the time it is sent."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from bridge.config import Settings
from bridge.signing import verify_siteti_request
from dispatcher.governor import Governor, GovernorConfig
from dispatcher.siteti import (
    OPERATION,
    PRIORITY,
    GovernedTransport,
    MeteredTransport,
    SitetiAuth,
    SitetiClient,
    SitetiError,
)
from tests.governor_tools import assert_confirmations_go_first

BASE = "http://siteti.test/v2.6"
KEY, SECRET = "key_1", "secret_1"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


def config(limit: int, **kw: float) -> GovernorConfig:
    return GovernorConfig(limit, key_prefix=f"test:gt:{uuid.uuid4().hex}", **kw)  # type: ignore[arg-type]


def governor(redis: Redis, limit: int, **kw: float) -> Governor:
    return Governor(redis, config(limit, **kw))


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "APPROVED"})


def http(
    gov: Governor, handler: Handler = ok, **kw: Callable[[httpx.Request], None]
) -> httpx.AsyncClient:
    transport = GovernedTransport(MeteredTransport(httpx.MockTransport(handler)), gov, **kw)
    return httpx.AsyncClient(transport=transport)


def waits(priority: str) -> float:
    count = REGISTRY.get_sample_value("bridge_governor_wait_seconds_count", {"priority": priority})
    return count or 0.0


async def test_every_call_takes_a_slot(redis: Redis) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    before = waits("transactional")
    siteti = SitetiClient(http(governor(redis, 600, safety=1.0), handler), BASE, KEY, SECRET)
    started = time.monotonic()
    await asyncio.gather(*(siteti.template_status(f"tpl_{i}") for i in range(5)))
    # Five slots 100 ms apart: the last 0.4 s after the first.
    assert 0.35 <= time.monotonic() - started <= 1.0
    assert waits("transactional") - before == 5
    for request in seen:  # the transports strip what is not for the wire
        assert PRIORITY not in request.extensions and OPERATION not in request.extensions


async def test_bulk_priority_travels_to_the_governor(redis: Redis) -> None:
    gov = governor(redis, 1200, safety=1.0, bulk_max_wait_seconds=30)  # 50 ms apart
    order: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        order.append(request.headers["Idempotency-Key"])
        return httpx.Response(200, json={"contact_id": "c"})

    siteti = SitetiClient(http(gov, handler), BASE, KEY, SECRET)

    async def call(name: str, priority: str) -> None:
        await siteti.upsert_contact("234", None, {}, name, priority)  # type: ignore[arg-type]

    await assert_confirmations_go_first(call, order)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_pauses_every_instance(
    redis: Redis, settings: Settings, status: int
) -> None:
    cfg = config(6000)
    gov = Governor(redis, cfg)
    body = {"error": {"code": "rate_limited", "message": "later"}}
    throttled = SitetiClient(
        http(gov, lambda r: httpx.Response(status, json=body, headers={"Retry-After": "1"})),
        BASE,
        KEY,
        SECRET,
    )
    with pytest.raises(SitetiError) as caught:
        await throttled.template_status("tpl")
    assert (caught.value.status, caught.value.retry_after) == (status, 1.0)
    # Another instance (its own Redis connection, the same schedule) waits out the pause.
    other = Redis.from_url(settings.redis_url)
    try:
        same_schedule = Governor(other, cfg)
        started = time.monotonic()
        await SitetiClient(http(same_schedule), BASE, KEY, SECRET).template_status("tpl")
        assert time.monotonic() - started >= 0.9
    finally:
        await other.aclose()


async def test_a_4xx_with_retry_after_does_not_pause(redis: Redis) -> None:
    gov = governor(redis, 6000)
    headers = {"Retry-After": "5"}
    siteti = SitetiClient(
        http(gov, lambda r: httpx.Response(400, headers=headers)), BASE, KEY, SECRET
    )
    with pytest.raises(SitetiError):
        await siteti.template_status("tpl")
    started = time.monotonic()
    await SitetiClient(http(gov), BASE, KEY, SECRET).template_status("tpl")
    assert time.monotonic() - started < 0.5


async def test_remaining_at_the_floor_pauses_until_reset(redis: Redis) -> None:
    gov = governor(redis, 6000)

    def last_of_window(request: httpx.Request) -> httpx.Response:
        reset = str(int(time.time()) + 2)
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        return httpx.Response(200, json={}, headers=headers)

    await SitetiClient(http(gov, last_of_window), BASE, KEY, SECRET).template_status("tpl")
    started = time.monotonic()
    await SitetiClient(http(gov), BASE, KEY, SECRET).template_status("tpl")
    assert time.monotonic() - started >= 0.5


async def test_a_request_that_waited_is_signed_when_sent(redis: Redis) -> None:
    gov = governor(redis, 6000)
    await gov.pause(1.2, reason="429")
    sent: list[tuple[float, httpx.Request]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((time.time(), request))
        return ok(request)

    signer = SitetiAuth(KEY, SECRET)
    siteti = SitetiClient(http(gov, handler, on_slot=signer.sign), BASE, KEY, SECRET)
    asked = time.time()
    await siteti.template_status("tpl")
    ((at, request),) = sent
    timestamp = int(request.headers["X-Siteti-Timestamp"])
    assert at - asked >= 1.1
    assert timestamp >= int(asked) + 1  # stamped after the pause, not when asked
    verify_siteti_request(
        [SECRET],
        timestamp=str(timestamp),
        signature=request.headers["X-Siteti-Signature"],
        method="GET",
        path_with_query="/v2.6/templates/tpl",
        body=b"",
        now=at,
    )


async def test_redis_down_is_not_a_siteti_error(settings: Settings) -> None:
    broken = Redis.from_url("redis://127.0.0.1:1/0")
    try:
        siteti = SitetiClient(http(governor(broken, 600)), BASE, KEY, SECRET)
        with pytest.raises(Exception) as caught:
            await siteti.template_status("tpl")
        assert not isinstance(caught.value, SitetiError)
    finally:
        await broken.aclose()
