"""What an exception out of the pipeline means for the event: wait for a dependency, or
give up on the event after a few attempts. Pure.

A dependency outage (PostgreSQL, Redis, the network) is waited out however long it lasts:
the event is fine and will go through once the dependency is back. Anything else — a record
written by an older or foreign producer, a value PostgreSQL refuses, a bug — will fail the
same way every time; retrying it forever would stall the customer's lane and, once the
lane's queue fills, the whole agent. Such an event is tried `poison_attempts` times and then
dead-lettered as `unprocessable`, and the lane moves on.
"""

from __future__ import annotations

import asyncpg
import httpx
import redis.exceptions

# SQLSTATE classes that say "the server, not the statement": connection exceptions (08),
# insufficient resources (53), operator intervention such as a restart (57), system errors
# (58); plus serialization failures and deadlocks (40001, 40P01), which succeed on retry.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "58")
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})


def is_dependency_outage(exc: BaseException) -> bool:
    """True when the failure is a dependency being unreachable or restarting."""
    if isinstance(
        exc,
        OSError | httpx.TransportError | asyncpg.InterfaceError | asyncpg.InternalClientError,
    ):
        # OSError covers ConnectionError and TimeoutError; asyncpg's InterfaceError covers
        # "connection closed" and a pool closing under us, InternalClientError a pooled
        # connection the server killed mid-operation while shutting down.
        return True
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return True  # BusyLoadingError (a restarting Redis) is a ConnectionError
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state in _TRANSIENT_SQLSTATES or state.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    return False


def describe(exc: BaseException) -> str:
    """The error as stored with a dead letter: type and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:2000]
