"""`bridge` when what it needs is not there: one line saying what to fix, exit status 2, no
traceback, never a password. Real connection attempts to closed ports (nothing listens), and
the CLI run as a subprocess, as an operator runs it. No stack needed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import ValidationError
from redis.asyncio import Redis

from bridge.config import Settings
from bridge_cli.failures import ENVIRONMENT, Unreachable, explain, without_userinfo
from bridge_cli.failures import POSTGRES as POSTGRES_DEPENDENCY
from tests.conftest import free_port

PASSWORD = "pw-never-shown-4417"


def caught(make: Callable[[], object]) -> BaseException:
    try:
        make()
    except Exception as exc:
        return exc
    raise AssertionError("expected a failure")


async def acaught(coro: object) -> BaseException:
    try:
        await coro  # type: ignore[misc]
    except Exception as exc:
        return exc
    raise AssertionError("expected a failure")


def settings_at(**values: str) -> Callable[[], Settings]:
    return lambda: Settings(**values)  # type: ignore[arg-type]


async def test_refused_postgres_names_the_address_and_the_setting_never_the_password() -> None:
    port = free_port()
    dsn = f"postgresql://bridge:{PASSWORD}@127.0.0.1:{port}/bridge"
    exc = await acaught(asyncpg.connect(dsn, timeout=5))
    line = explain(exc, settings_at(database_url=dsn))
    assert line == (
        f"cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused):"
        " start it (make stack-up) or set DATABASE_URL"
    )


async def test_unknown_postgres_host() -> None:
    dsn = f"postgresql://bridge:{PASSWORD}@no-such-host.invalid:5432/bridge"
    exc = await acaught(asyncpg.connect(dsn, timeout=5))
    line = explain(exc, settings_at(database_url=dsn))
    assert line is not None and "no-such-host.invalid:5432 (unknown host)" in line
    assert PASSWORD not in line


async def test_refused_redis() -> None:
    port = free_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    try:
        exc = await acaught(client.ping())
    finally:
        await client.aclose()
    line = explain(exc, settings_at(redis_url=url))
    assert line == (
        f"cannot reach Redis at 127.0.0.1:{port} (connection refused):"
        " start it (make stack-up) or set REDIS_URL"
    )


async def test_refused_kafka() -> None:
    servers = f"127.0.0.1:{free_port()}"
    producer = AIOKafkaProducer(bootstrap_servers=servers, request_timeout_ms=2000)
    try:
        exc = await acaught(producer.start())
    finally:
        await producer.stop()
    line = explain(exc, settings_at(kafka_bootstrap_servers=servers))
    assert line is not None and line.startswith(f"cannot reach Kafka at {servers} (")
    assert line.endswith("or set KAFKA_BOOTSTRAP_SERVERS")


async def test_refused_http_service_is_named_by_the_setting_holding_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient() as http:
        exc = await acaught(http.get(f"{url}/v1/messages?q=1"))
    line = explain(exc, settings_at(siteti_base_url=url))
    assert line == f"cannot reach {url} (connection refused): start it or set SITETI_BASE_URL"


def test_an_invalid_setting_is_named_without_its_value() -> None:
    exc = caught(lambda: Settings(retention_days=f"{PASSWORD}"))  # type: ignore[arg-type]
    assert isinstance(exc, ValidationError)
    line = explain(exc, lambda: None)
    assert line is not None and line.startswith("invalid setting RETENTION_DAYS:")
    assert PASSWORD not in line


def test_a_tool_that_could_not_connect_says_so_itself() -> None:
    exc = Unreachable(POSTGRES_DEPENDENCY, "connection refused")
    line = explain(exc, lambda: None)
    assert line == (
        "cannot reach PostgreSQL at (the address in DATABASE_URL) (connection refused):"
        " start it (make stack-up) or set DATABASE_URL"
    )


def test_bugs_are_not_explained_away() -> None:
    assert explain(ValueError("a bug"), lambda: None) is None
    assert explain(KeyError("x"), lambda: None) is None
    # An OSError of our own (a file), not a client library's: a bug or a bad path, not a peer.
    assert explain(caught(lambda: Path("/no/such/file").read_text()), lambda: None) is None


def test_userinfo_is_removed_from_any_url_in_text() -> None:
    text = f"failed: postgresql://bridge:{PASSWORD}@db:5432/x and redis://:{PASSWORD}@r:6379"
    assert without_userinfo(text) == "failed: postgresql://db:5432/x and redis://r:6379"


# --- the CLI itself ---------------------------------------------------------------------------

BRIDGE = Path(sys.executable).with_name("bridge")


def run_bridge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    return subprocess.run(
        [str(BRIDGE), *args], capture_output=True, text=True, env=environment, timeout=60
    )


@pytest.fixture(scope="module")
def customers_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "customers.csv"
    path.write_text("account_number,email,phone,name,tier,late_payments\n0123456789,,,,,\n")
    return path


COMMANDS = [
    ["audit", "paystack:T1"],
    ["audit", "paystack:T1", "--json"],
    ["dlq", "list", "--json"],
    ["dlq", "stats"],
    ["dlq", "show", "1"],
    ["db", "migrate"],
    ["retention", "run", "--dry-run", "--json"],
    ["keys", "rotate", "--dry-run"],
    ["customers", "import", "{csv}", "--dry-run"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_without_postgres_says_one_line_and_exits_2(
    command: list[str], customers_csv: Path
) -> None:
    port = free_port()
    args = [str(customers_csv) if part == "{csv}" else part for part in command]
    done = run_bridge(*args, DATABASE_URL=f"postgresql://bridge:{PASSWORD}@127.0.0.1:{port}/bridge")
    assert done.returncode == ENVIRONMENT, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"error: cannot reach PostgreSQL at 127.0.0.1:{port} (connection refused):"
        " start it (make stack-up) or set DATABASE_URL\n"
    )
    assert "Traceback" not in done.stderr and PASSWORD not in done.stderr


def test_a_bad_setting_is_one_line_too() -> None:
    done = run_bridge("dlq", "list", RETENTION_DAYS=PASSWORD)
    assert done.returncode == ENVIRONMENT
    assert done.stderr.count("\n") == 1 and "invalid setting RETENTION_DAYS" in done.stderr
    assert PASSWORD not in done.stderr and "Traceback" not in done.stderr
