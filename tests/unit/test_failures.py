"""Which failures are waited out (dependency outages) and which make an event poison."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
import redis.exceptions

from bridge.retry import OUTAGE_BACKOFF
from dispatcher.failures import describe, is_dependency_outage


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        OSError("network unreachable"),
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
        redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.InterfaceError("pool is closing"),
        httpx.ConnectError("connection refused"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_dependency_outages_are_waited_out(exc: BaseException) -> None:
    assert is_dependency_outage(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"),
        asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        asyncpg.exceptions.DatetimeFieldOverflowError("date/time field value out of range"),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        OverflowError("date value out of range"),
        ValueError("year 0 is out of range"),
        KeyError("customer"),
        TypeError("'NoneType' object is not subscriptable"),
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_everything_else_makes_the_event_poison(exc: BaseException) -> None:
    assert not is_dependency_outage(exc)


def test_the_stored_error_names_the_type_and_is_bounded() -> None:
    assert describe(ValueError("bad date")) == "ValueError: bad date"
    assert len(describe(ValueError("x" * 10_000))) == 2000


def test_outage_backoff_is_capped_low_and_survives_a_long_outage() -> None:
    # Work resumes within seconds of a dependency's return, even after hours of retries.
    assert all(0 <= OUTAGE_BACKOFF.delay(n) <= 5.0 for n in (0, 1, 5, 50, 10_000))
