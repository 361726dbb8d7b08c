"""The ingest edge's defences against hostile traffic (docs/security.md).

- who may post: per-provider IP allowlists (`<PROVIDER>_ALLOWED_IPS`), applied to the real
  client address, which is read from `X-Forwarded-For` only behind a trusted proxy;
- how often a client may fail: rejected requests are counted per client address in Redis
  (shared by every instance); over `INGEST_IP_LIMIT_PER_MINUTE` its rejections become 429;
- how much one process takes on: `ConcurrencyCap`, a pure ASGI middleware answering 503.

The address functions are pure (unit-tested with hypothesis); `RejectionCounter` is the only
I/O, and it fails open: a Redis outage must never turn a provider's webhook into an error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import problems
from bridge.config import Settings
from bridge.edge import problem_response
from bridge.logs import get_logger
from bridge.metrics import (
    RATE_LIMITER_ERRORS,
    REQUESTS_IN_FLIGHT,
    REQUESTS_SHED,
    SECURITY_REJECTIONS,
)

log = get_logger("ingest.defences")

SERVICE = "ingest"
Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Longer text cannot be an address (an IPv6 address with a port and zone is well under this):
# refusing it unparsed keeps hostile headers cheap.
_MAX_ADDRESS_CHARS = 64
# X-Forwarded-For hops examined from the right; real proxy chains are a handful long.
MAX_FORWARDED_HOPS = 32


# --- addresses (pure) ---------------------------------------------------------------------


def parse_networks(values: Iterable[str], setting: str) -> tuple[Network, ...]:
    """CIDR networks (a bare address is its own /32 or /128); ValueError naming the setting."""
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{setting.upper()}: {value!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


# Cached: a provider posts from a few addresses (or one load balancer), and parsing costs
# more than the rest of the edge's checks; bounded, so varied hostile peers only churn it.
@lru_cache(maxsize=4096)
def parse_address(text: str) -> Address | None:
    """An address as a peer or an X-Forwarded-For entry writes it, or None when unreadable.

    Accepts `198.51.100.7`, `198.51.100.7:5100`, `2001:db8::7`, `[2001:db8::7]:443`; an
    IPv4-mapped IPv6 address (`::ffff:198.51.100.7`, what dual-stack sockets report) is
    returned as the IPv4 address, so IPv4 allowlists match it.
    """
    value = text.strip()
    if not value or len(value) > _MAX_ADDRESS_CHARS:
        return None
    if value.startswith("["):
        host, closed, rest = value[1:].partition("]")
        if not closed or (rest and not (rest.startswith(":") and _is_port(rest[1:]))):
            return None
        value = host
    elif value.count(":") == 1:
        value, _, port = value.partition(":")
        if not _is_port(port):
            return None
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_port(text: str) -> bool:
    # isascii: "²".isdigit() is True, and int() refuses it.
    return text.isascii() and text.isdigit() and int(text) <= 65535


def in_networks(address: Address | None, networks: Iterable[Network]) -> bool:
    """Whether `address` is in any of `networks` (an IPv4 address is never in an IPv6 one)."""
    return address is not None and any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> Address | None:
    """The client a request comes from.

    The peer (the TCP connection's other end), unless the peer is a trusted proxy: then the
    right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries left of that
    one were written by the client and prove nothing. An unreadable entry stops the walk at
    the trusted proxy right of it (the last address anyone vouches for); a chain of trusted
    proxies only gives its left-most one. `forwarded_for` is every X-Forwarded-For header,
    in order. None when the peer itself is unknown or unreadable.
    """
    address = parse_address(peer) if peer else None
    if address is None or not in_networks(address, trusted):
        return address
    entries = [entry for header in forwarded_for for entry in header.split(",") if entry.strip()]
    for entry in reversed(entries[-MAX_FORWARDED_HOPS:]):
        hop = parse_address(entry)
        if hop is None:
            return address
        address = hop
        if not in_networks(hop, trusted):
            return hop
    return address


def limit_key(address: Address) -> str:
    """The rate-limited unit: an IPv4 address, or an IPv6 /64 (one host is usually given a
    whole /64, so counting single IPv6 addresses would limit nobody)."""
    if isinstance(address, IPv6Address):
        return str(IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


# --- the rejection counter (Redis) --------------------------------------------------------

# INCR, and start the window's expiry on the first rejection (or if it was ever lost):
# atomic, so instances racing on one client still count every rejection exactly once.
_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


@dataclass(frozen=True)
class Count:
    count: int
    retry_after: int  # whole seconds until the window ends (at least 1)


class RejectionCounter:
    """Rejected requests per client in fixed windows (from the client's first rejection),
    shared by every ingest instance through Redis.

    Fails open: when Redis does not answer, nothing is counted (logged, and counted in
    bridge_rate_limiter_errors_total), and Redis is left alone for `pause_seconds`, so an
    outage costs the edge one short timeout, not one per request.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        window_seconds: int = 60,
        prefix: str = "bridge:ingest:rejected:",
        pause_seconds: float = 5.0,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(_COUNT_SCRIPT)
        self._window_ms = window_seconds * 1000
        self._prefix = prefix
        self._pause_seconds = pause_seconds
        self._paused_until = 0.0

    async def add(self, address: Address) -> Count | None:
        """Count one rejection; None when the counter is unavailable."""
        if time.monotonic() < self._paused_until:
            return None
        try:
            count, ttl_ms = await self._script(
                keys=[self._prefix + limit_key(address)], args=[self._window_ms]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._paused_until = time.monotonic() + self._pause_seconds
            RATE_LIMITER_ERRORS.labels(SERVICE).inc()
            log.warning(
                "rate_limiter_unavailable",
                error=repr(exc),
                fail_open_seconds=self._pause_seconds,
            )
            return None
        return Count(int(count), max(1, math.ceil(int(ttl_ms) / 1000)))

    async def aclose(self) -> None:
        await self._redis.aclose()


# --- the edge, as the ingest app uses it --------------------------------------------------


@dataclass
class EdgeDefences:
    trusted_proxies: tuple[Network, ...] = ()
    allowlists: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)
    counter: RejectionCounter | None = None
    limit_per_minute: int = 0

    @classmethod
    def from_settings(cls, settings: Settings, providers: Collection[str]) -> EdgeDefences:
        """Checked at start-up: an unreadable network stops the start, naming its setting."""
        allowlists: dict[str, tuple[Network, ...]] = {}
        for name in providers:
            setting = f"{name}_allowed_ips"
            networks = parse_networks(getattr(settings, setting, ()), setting)
            if networks:
                allowlists[name] = networks
        counter = None
        if settings.ingest_ip_limit_per_minute > 0:
            # Short timeouts: a hung Redis must not hold up the answer to a rejected request.
            redis = Redis.from_url(
                settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            counter = RejectionCounter(redis)
        return cls(
            trusted_proxies=parse_networks(settings.trusted_proxies, "trusted_proxies"),
            allowlists=allowlists,
            counter=counter,
            limit_per_minute=settings.ingest_ip_limit_per_minute,
        )

    def client(self, request: Request) -> Address | None:
        peer = request.client.host if request.client else None
        if not self.trusted_proxies:  # nobody's X-Forwarded-For is believed: not even read
            return client_address(peer, (), ())
        return client_address(
            peer, request.headers.getlist("x-forwarded-for"), self.trusted_proxies
        )

    def allowed(self, provider: str, client: Address | None) -> bool:
        networks = self.allowlists.get(provider)
        return not networks or in_networks(client, networks)

    async def reject(
        self,
        client: Address | None,
        provider: str | None,
        reason: str,
        response: Response,
        detail: str | None = None,
    ) -> Response:
        """Count and log a rejected request; its answer, or 429 once the client is over the
        limit. Only unauthenticated requests come here, so a provider's signed webhooks are
        never counted and never refused by the limit, even from a client that is over it."""
        provider_label = provider or "unknown"  # bounded: never the name a client sent
        count = await self.counter.add(client) if self.counter and client else None
        if count is not None and count.count > self.limit_per_minute:
            SECURITY_REJECTIONS.labels(SERVICE, provider_label, "rate_limited").inc()
            if count.count == self.limit_per_minute + 1:
                # Once per window: a flood must not become a flood of log lines.
                self._log(client, provider_label, "rate_limited", f"after {reason}")
            return problem_response(
                problems.RATE_LIMITED,
                429,
                "too many rejected requests from this address;"
                f" retry in {count.retry_after} s with a valid signature",
                headers={"retry-after": str(count.retry_after)},
                retry_after=count.retry_after,
            )
        SECURITY_REJECTIONS.labels(SERVICE, provider_label, reason).inc()
        self._log(client, provider_label, reason, detail)
        return response

    @staticmethod
    def _log(client: Address | None, provider: str, reason: str, detail: str | None) -> None:
        # The detail is our own message (which check failed), never a header's value.
        log.warning(
            "security_webhook_rejected",
            provider=provider,
            reason=reason,
            detail=detail,
            client=str(client) if client else None,
        )

    async def aclose(self) -> None:
        if self.counter is not None:
            await self.counter.aclose()


# --- the concurrency cap (pure ASGI) ------------------------------------------------------


class ConcurrencyCap:
    """At most `limit` HTTP requests in this process at once; the rest are answered 503
    with Retry-After before anything is read (providers retry a 503). Pure ASGI and
    lock-free (one event loop), so refusing costs next to nothing. /healthz and /metrics
    are exempt: an overloaded instance must not also look dead to its orchestrator."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        exempt: Collection[str] = ("/healthz", "/metrics"),
        retry_after_seconds: int = 1,
    ) -> None:
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)
        self.in_flight = 0
        self._gauge = REQUESTS_IN_FLIGHT.labels(SERVICE)
        self._body = orjson.dumps(
            problems.problem(
                problems.OVERLOADED,
                503,
                "too many requests in progress; retry shortly",
                retry_after=retry_after_seconds,
            )
        )
        self._headers = [
            (b"content-type", problems.MEDIA_TYPE.encode()),
            (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", str(retry_after_seconds).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            REQUESTS_SHED.labels(SERVICE).inc()
            await send({"type": "http.response.start", "status": 503, "headers": self._headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        self._gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self._gauge.dec()
