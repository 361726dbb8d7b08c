"""What the CLI prints instead of a traceback when something it needs is not there.

`explain` turns an exception into the one line to print (what failed, what to fix), or None
when it is not a failure to reach PostgreSQL, Redis, Kafka or an HTTP service, nor a bad
setting: those are bugs and keep their traceback. Pure apart from reading the settings for
the address to name; never prints a DSN's user information (its password).

`GuardedGroup` applies it to every command of the app, once: exit status 2 (docs/cli.md).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis.exceptions
import typer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError
from typer.core import TyperGroup

from bridge.config import Settings, get_settings

#: The exit status of "the environment is wrong": unreachable, refused, misconfigured.
ENVIRONMENT = 2


@dataclass(frozen=True)
class Dependency:
    name: str
    setting: str  # the environment variable that says where it is
    libraries: tuple[str, ...]  # the client libraries whose failures are its own
    default_port: int | None = None  # None: the setting is host:port pairs, not a URL

    def address(self, settings: Settings | None) -> str:
        """Host and port from the setting, never its user or password."""
        if settings is None:
            return "(the address in " + self.setting + ")"
        value = str(getattr(settings, self.setting.lower()))
        if self.default_port is None:
            return value
        parts = urlsplit(value)
        port = parts.port or self.default_port
        return f"{parts.hostname or 'localhost'}:{port}"


POSTGRES = Dependency("PostgreSQL", "DATABASE_URL", ("asyncpg",), 5432)
REDIS = Dependency("Redis", "REDIS_URL", ("redis",), 6379)
KAFKA = Dependency("Kafka", "KAFKA_BOOTSTRAP_SERVERS", ("aiokafka", "kafka"))
# Services reached over HTTP (Siteti, the bridge's own APIs): named by the URL that failed.
HTTP = Dependency("HTTP service", "", ("httpx", "httpcore"))
_DEPENDENCIES = (POSTGRES, REDIS, KAFKA, HTTP)

# What PostgreSQL says when it is there but will not have us: the login, the database.
_PG_REFUSALS = (
    asyncpg.InvalidAuthorizationSpecificationError,  # includes a wrong password
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InsufficientPrivilegeError,
)
_UNREACHABLE = (
    OSError,  # refused, reset, unknown host; TimeoutError is one too
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    redis.exceptions.ConnectionError,  # includes AuthenticationError
    redis.exceptions.TimeoutError,
    KafkaConnectionError,
    httpx.TransportError,
)


class Unreachable(Exception):
    """Raised by a command that found out itself (a tool it ran failed to connect)."""

    def __init__(self, dependency: Dependency, reason: str) -> None:
        super().__init__(f"{dependency.name}: {reason}")
        self.dependency = dependency
        self.reason = reason


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def without_userinfo(text: str) -> str:
    """`text` with every URL's `user:password@` removed."""
    return _USERINFO.sub("", text)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (cause, context) and a group's members, depth first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _library_of(exc: BaseException) -> Dependency | None:
    """Whose failure it is: the exception's module, else the innermost library frame (a
    plain OSError from asyncpg's connect is raised in asyncio, called from asyncpg)."""
    modules = [type(exc).__module__]
    modules += [
        frame.filename.replace(os.sep, ".")
        for frame in reversed(traceback.extract_tb(exc.__traceback__))
    ]
    for module in modules:
        for dependency in _DEPENDENCIES:
            if any(
                module.startswith(f"{lib}.") or module == lib or f"site-packages.{lib}." in module
                for lib in dependency.libraries
            ):
                return dependency
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Unreachable):
        return exc.reason
    for cause in _causes(exc):
        if isinstance(cause, TimeoutError | httpx.TimeoutException | redis.exceptions.TimeoutError):
            return "timed out"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        if isinstance(cause, ConnectionRefusedError) or (
            isinstance(cause, OSError) and cause.errno == errno.ECONNREFUSED
        ):
            return "connection refused"
        if isinstance(cause, redis.exceptions.AuthenticationError):
            return "authentication failed"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "refused" in text.lower() or "connect call failed" in text.lower():
        return "connection refused"
    return without_userinfo(text)[:120]


def _setting_for(url: str, settings: Settings | None) -> str | None:
    """The setting that holds the URL (same scheme, host and port), to name in the advice."""
    if settings is None:
        return None
    wanted = urlsplit(url)
    for name, value in settings.model_dump().items():
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            found = urlsplit(value)
            if (found.scheme, found.hostname, found.port) == (
                wanted.scheme,
                wanted.hostname,
                wanted.port,
            ):
                return name.upper()
    return None


def _http_line(exc: httpx.TransportError, settings: Settings | None) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return f"cannot reach an HTTP service ({_reason(exc)})"
    origin = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    setting = _setting_for(origin, settings)
    fix = f"start it or set {setting}" if setting else "start it or correct its URL setting"
    return f"cannot reach {origin} ({_reason(exc)}): {fix}"


def _settings_line(exc: ValidationError) -> str:
    # Only where and what: a setting's value may be a secret.
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]).upper() or "a setting"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid setting {where}: {first['msg']}{more}: fix it in the environment or .env"


def explain(exc: BaseException, settings: Callable[[], Settings | None]) -> str | None:
    """The line to print for `exc`, or None when it is not the environment's fault."""
    for cause in _causes(exc):
        if isinstance(cause, Unreachable):
            return _unreachable_line(cause.dependency, cause, settings())
        if isinstance(cause, ValidationError) and cause.title == "Settings":
            return _settings_line(cause)
        if isinstance(cause, _PG_REFUSALS):
            where = POSTGRES.address(settings())
            what = " ".join(str(cause).split())
            return f"PostgreSQL at {where} refused us ({what}): check DATABASE_URL"
        if isinstance(cause, httpx.TransportError):
            return _http_line(cause, settings())
        if isinstance(cause, KafkaError) and "bootstrap" in str(cause).lower():
            return _unreachable_line(KAFKA, cause, settings())
        if isinstance(cause, _UNREACHABLE):
            dependency = _library_of(cause)
            if dependency is not None and dependency is not HTTP:
                return _unreachable_line(dependency, cause, settings())
    return None


def _unreachable_line(dependency: Dependency, exc: BaseException, settings: Settings | None) -> str:
    return (
        f"cannot reach {dependency.name} at {dependency.address(settings)} ({_reason(exc)}):"
        f" start it (make stack-up) or set {dependency.setting}"
    )


def _settings_or_none() -> Settings | None:
    try:
        return get_settings()
    except ValidationError:
        return None


def _fail(line: str) -> NoReturn:
    typer.echo(f"error: {line}", err=True)
    raise typer.Exit(ENVIRONMENT)


class GuardedGroup(TyperGroup):
    """The app's top group: a command failing for want of a dependency or a valid setting
    ends with one line on stderr and exit status 2; anything else propagates."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:
            line = explain(exc, _settings_or_none)
            if line is None:
                raise
            _fail(line)
