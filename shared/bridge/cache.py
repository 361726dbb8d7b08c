"""Redis adapter: one client (connection pool) per process."""

from __future__ import annotations

from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff


def new_redis(url: str) -> Redis:
    """A client that fails fast while Redis is away and reconnects by itself once it is back.

    A command on a dead connection is retried a few times over ~1 s (a restart's closed
    sockets, a replica's failover); past that the error reaches the caller, whose own
    outage backoff takes over. Timeouts bound every wait, so a stalled peer never hangs a
    worker; the health check replaces connections idle across a restart before use.
    """
    return Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=0.5), retries=3),
        retry_on_error=[exceptions.ConnectionError, exceptions.TimeoutError],
    )
