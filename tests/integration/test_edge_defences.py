"""The ingest edge's defences through the real app over HTTP (uvicorn, as `python -m ingest`
serves it), with real Redis (the shared rejection counter) and Kafka (accepted webhooks).

Requests come from 127.0.0.1; behind TRUSTED_PROXIES=127.0.0.1 each test speaks for clients
of its own (random addresses in X-Forwarded-For), so the shared Redis counters of parallel or
repeated runs never meet.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import httpx
import orjson
import pytest

from bridge.config import Settings
from bridge.signing import sign
from ingest.app import create_app
from tests.conftest import free_port
from tests.problem_tools import problem_detail
from tests.serving import running

pytestmark = pytest.mark.integration

SECRET = "moniepoint_edge_test_secret"
LIMIT = 5
LOCAL = "127.0.0.1/32"

Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def serve(settings: Settings, events_topic: str) -> Serve:
    """An ingest instance with the given settings over the test defaults; yields its URL."""

    @asynccontextmanager
    async def serve(**updates: Any) -> AsyncIterator[str]:
        configured = settings.model_copy(
            update={
                "moniepoint_webhook_secrets": [SECRET],
                "trusted_proxies": [LOCAL],
                "ingest_ip_limit_per_minute": LIMIT,
                **updates,
            }
        )
        # As in production (ingest.__main__): only TRUSTED_PROXIES decides about the header.
        async with running(create_app(configured), proxy_headers=False) as url:
            yield url

    return serve


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=600, max_keepalive_connections=600)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        yield client


def client_ip() -> str:
    """A client of this test's own, in 198.18.0.0/15 (reserved for tests)."""
    return str(IPv4Address(0xC6120000 + random.randrange(2**17)))


def payment() -> bytes:
    return orjson.dumps(
        {
            "event": "payment.successful",
            "data": {
                "transactionReference": f"EDGE-{uuid.uuid4().hex[:12]}",
                "amount": "5000.00",
                "currency": "NGN",
                "customer": {"accountNumber": "0123456789", "name": "Ada Obi"},
            },
        }
    )


async def post(
    http: httpx.AsyncClient,
    url: str,
    client: str | None = None,
    *,
    signed: bool = True,
    provider: str = "moniepoint",
    body: bytes | None = None,
) -> httpx.Response:
    body = body if body is not None else payment()
    headers = {"Content-Type": "application/json"}
    headers["X-Moniepoint-Signature"] = sign(SECRET if signed else "wrong", body)
    if client:
        headers["X-Forwarded-For"] = client
    return await http.post(f"{url}/webhooks/{provider}", content=body, headers=headers)


async def metric(http: httpx.AsyncClient, url: str, line: str) -> float:
    """The value of one sample line (`name{labels}`) on /metrics, 0 when absent."""
    for sample in (await http.get(f"{url}/metrics")).text.splitlines():
        if sample.startswith(line + " "):
            return float(sample.rsplit(" ", 1)[1])
    return 0.0


REJECTED = 'bridge_security_rejections_total{{provider="{}",reason="{}",service="ingest"}}'


# --- allowlists ------------------------------------------------------------------------------


async def test_allowlist_admits_listed_networks_and_refuses_others(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    allowed = ["203.0.113.0/24", "2001:db8:5::/48"]
    async with serve(moniepoint_allowed_ips=allowed) as url:
        assert (await post(http, url, "203.0.113.7")).status_code == 200
        assert (await post(http, url, "2001:db8:5::9")).status_code == 200
        assert (await post(http, url, "[2001:db8:5::10]:443")).status_code == 200

        before = await metric(http, url, REJECTED.format("moniepoint", "ip_not_allowed"))
        outsider = client_ip()
        refused = await post(http, url, outsider)  # validly signed, but from elsewhere
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("#client-not-allowed")
        assert problem_detail(403, refused.headers["content-type"], refused.json()) == (
            f"client address {outsider} is not allowed for moniepoint"
        )
        v6 = str(IPv6Address(f"2001:db8:6::{random.randrange(2**16):x}"))
        assert (await post(http, url, v6)).status_code == 403
        after = await metric(http, url, REJECTED.format("moniepoint", "ip_not_allowed"))
        assert after - before == 2

        # Another provider without an allowlist: any address, its own checks.
        response = await post(http, url, outsider, provider="paystack")
        assert response.status_code == 401


# --- X-Forwarded-For -------------------------------------------------------------------------


async def test_forwarded_for_is_believed_only_from_a_trusted_peer(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    # No limit: the refusals of 127.0.0.1 below must not count against other tests' requests.
    allowlist = {"moniepoint_allowed_ips": ["203.0.113.0/24"], "ingest_ip_limit_per_minute": 0}
    async with serve(**allowlist) as behind_proxy:
        # The right-most address the trusted proxy (127.0.0.1) did not vouch for decides.
        spoof_left = f"{client_ip()}, 203.0.113.7"
        assert (await post(http, behind_proxy, spoof_left)).status_code == 200
        spoof_right = f"203.0.113.7, {client_ip()}"
        assert (await post(http, behind_proxy, spoof_right)).status_code == 403
        # A chain of trusted proxies is walked through.
        through_two = "203.0.113.7, 127.0.0.1"
        assert (await post(http, behind_proxy, through_two)).status_code == 200
        # Without the header, the trusted proxy itself is the client.
        assert (await post(http, behind_proxy, None)).status_code == 403

    # No trusted proxies: the header is the client's own claim and is ignored.
    async with serve(**allowlist, trusted_proxies=[]) as direct:
        assert (await post(http, direct, "203.0.113.7")).status_code == 403
    untrusting = {"trusted_proxies": [], "ingest_ip_limit_per_minute": 0}
    async with serve(moniepoint_allowed_ips=[LOCAL], **untrusting) as direct:
        assert (await post(http, direct, client_ip())).status_code == 200


# --- the shared rejection limit --------------------------------------------------------------


async def test_a_flood_of_bad_requests_is_429_on_every_instance(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    flooder, bystander = client_ip(), client_ip()
    async with serve() as a, serve() as b:
        # LIMIT rejections, spread over both instances, are answered as themselves…
        for n in range(LIMIT):
            response = await post(http, (a, b)[n % 2], flooder, signed=False)
            assert response.status_code == 401, response.text
        # …after which both answer 429 for the rest of the window, whatever the rejection.
        for url in (a, b):
            for attempt in (
                post(http, url, flooder, signed=False),
                post(http, url, flooder, provider="nosuchprovider"),
            ):
                response = await attempt
                assert response.status_code == 429, response.text
                assert 1 <= int(response.headers["retry-after"]) <= 60
                problem = response.json()
                detail = problem_detail(429, response.headers["content-type"], problem)
                assert "too many rejected requests" in detail
                assert problem["retry_after"] == int(response.headers["retry-after"])
        # A valid webhook from the same address is still accepted, on either instance.
        assert (await post(http, a, flooder)).status_code == 200
        assert (await post(http, b, flooder)).status_code == 200
        # Other clients are not affected.
        assert (await post(http, b, bystander, signed=False)).status_code == 401
        assert await metric(http, a, REJECTED.format("moniepoint", "rate_limited")) >= 2
        assert await metric(http, a, REJECTED.format("unknown", "rate_limited")) >= 1


async def test_an_ipv6_flood_is_counted_per_64(serve: Serve, http: httpx.AsyncClient) -> None:
    prefix = f"2001:db8:{random.randrange(2**16):x}:{random.randrange(2**16):x}"
    async with serve() as url:
        for host in range(LIMIT):
            response = await post(http, url, f"{prefix}::{host + 1:x}", signed=False)
            assert response.status_code == 401
        response = await post(http, url, f"{prefix}:1:2:3:4", signed=False)
        assert response.status_code == 429


async def test_500_simultaneous_valid_webhooks_from_an_address_over_the_limit(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    provider_egress = client_ip()
    async with serve() as url:
        for _ in range(LIMIT + 1):  # someone behind the same address misbehaved first
            await post(http, url, provider_egress, signed=False)
        assert (await post(http, url, provider_egress, signed=False)).status_code == 429

        started = time.monotonic()
        answers = await asyncio.gather(*(post(http, url, provider_egress) for _ in range(500)))
        statuses = [a.status_code for a in answers]
        assert statuses == [200] * 500, {s: statuses.count(s) for s in set(statuses)}
        assert time.monotonic() - started < 60


async def test_redis_down_fails_open(serve: Serve, http: httpx.AsyncClient) -> None:
    client = client_ip()
    async with serve(redis_url=f"redis://127.0.0.1:{free_port()}/0") as url:
        before = await metric(http, url, 'bridge_rate_limiter_errors_total{service="ingest"}')
        for _ in range(LIMIT + 3):
            assert (await post(http, url, client, signed=False)).status_code == 401
        assert (await post(http, url, client)).status_code == 200
        after = await metric(http, url, 'bridge_rate_limiter_errors_total{service="ingest"}')
        assert after > before


# --- the concurrency cap ---------------------------------------------------------------------


async def test_the_concurrency_cap_answers_503_and_recovers(
    serve: Serve, http: httpx.AsyncClient
) -> None:
    cap = 3
    release = asyncio.Event()
    client = client_ip()

    def slow(body: bytes) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            yield body[:10]
            await release.wait()
            yield body[10:]

        return chunks()

    async def held() -> httpx.Response:
        body = payment()
        headers = {"X-Moniepoint-Signature": sign(SECRET, body), "X-Forwarded-For": client}
        return await http.post(f"{url}/webhooks/moniepoint", content=slow(body), headers=headers)

    async with serve(ingest_max_concurrency=cap, ingest_ip_limit_per_minute=0) as url:
        holding = [asyncio.create_task(held()) for _ in range(cap)]
        deadline = time.monotonic() + 20
        in_flight = 'bridge_requests_in_flight{service="ingest"}'
        while await metric(http, url, in_flight) < cap:  # /metrics is exempt from the cap
            assert time.monotonic() < deadline, "the held requests never reached the app"
            await asyncio.sleep(0.05)
        shed = await post(http, url, client)
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "1"
        assert "retry" in problem_detail(503, shed.headers["content-type"], shed.json())
        assert (await http.get(f"{url}/healthz")).status_code == 200  # probes are exempt
        assert await metric(http, url, 'bridge_requests_shed_total{service="ingest"}') >= 1
        release.set()
        assert [r.status_code for r in await asyncio.gather(*holding)] == [200] * cap
        assert (await post(http, url, client)).status_code == 200
