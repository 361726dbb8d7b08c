"""The whole pipeline as real processes on free ports: sandbox, ingest, receipts, dispatcher."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.config import Settings
from bridge.db import create_pool, ensure_login_role, migrate
from bridge.events import EVENTS_TOPIC
from bridge.kafka import client_options
from bridge.signing import sign, sign_siteti_request
from tests.process_tools import stop_process

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".stack/logs/tests"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    ready_url: str
    popen: subprocess.Popen[bytes] | None = None
    # Shared by default (appended to); a test that reads its processes' logs gives its own.
    log_dir: Path = LOGS

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.popen.returncode}); see {self.log_path}"
                )
            try:
                if httpx.get(self.ready_url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready in {timeout} s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.popen is not None:
            stop_process(self.popen, sig, timeout)


@dataclass
class Pipeline:
    env: dict[str, str]
    ports: dict[str, int]
    moniepoint_secret: str
    processes: dict[str, Process] = field(default_factory=dict)

    @property
    def ingest(self) -> str:
        return f"http://127.0.0.1:{self.ports['ingest']}"

    @property
    def receipts(self) -> str:
        return f"http://127.0.0.1:{self.ports['receipts']}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.ports['sandbox']}"

    @property
    def console(self) -> str:
        return f"http://127.0.0.1:{self.ports['console']}"

    def add(
        self, name: str, module: str, ready_path: str, port_name: str, **extra_env: str
    ) -> None:
        self.processes[name] = Process(
            name,
            ["-m", module],
            {**self.env, **extra_env},
            f"http://127.0.0.1:{self.ports[port_name]}{ready_path}",
        )

    def provision(self) -> None:
        """A topic and a database of this pipeline's own, as one deployment has."""
        bootstrap, topic = self.env["KAFKA_BOOTSTRAP_SERVERS"], self.env["EVENTS_TOPIC"]
        asyncio.run(create_topic(bootstrap, topic, **self.kafka_options))
        asyncio.run(admin_sql(self.admin_dsn, f'CREATE DATABASE "{self.database}"'))
        asyncio.run(prepare_database(self.env["DATABASE_URL"], self.admin_dsn))

    def deprovision(self) -> None:
        bootstrap, topic = self.env["KAFKA_BOOTSTRAP_SERVERS"], self.env["EVENTS_TOPIC"]
        asyncio.run(delete_topic(bootstrap, topic, **self.kafka_options))
        asyncio.run(
            admin_sql(self.admin_dsn, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        )

    @property
    def kafka_options(self) -> dict[str, Any]:
        """The pipeline's Kafka security (KAFKA_SECURITY_PROTOCOL…), as its services use it."""
        return client_options(kafka_settings(self.env))

    @property
    def database(self) -> str:
        return urlsplit(self.env["DATABASE_URL"]).path.lstrip("/")

    @property
    def admin_dsn(self) -> str:
        """The stack's own database, from which this pipeline's is created and dropped."""
        return urlsplit(self.env["DATABASE_URL"])._replace(path="/postgres").geturl()

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """One row from this pipeline's database (jsonb decoded, as the services see it)."""
        pool = await create_pool(self.env["DATABASE_URL"], max_size=1)
        try:
            return await pool.fetchrow(query, *args)
        finally:
            await pool.close()

    def start(self, *names: str) -> None:
        for name in names or tuple(self.processes):
            self.processes[name].start()
        for name in names or tuple(self.processes):
            self.processes[name].wait_ready()

    def stop(self, *names: str, sig: int = signal.SIGTERM) -> None:
        for name in names or tuple(self.processes):
            self.processes[name].stop(sig)

    # --- acting on it --------------------------------------------------------------------

    def signed(
        self, payload: dict[str, Any], secret: str | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(payload)
        signature = sign(secret or self.moniepoint_secret, body)
        return body, {"Content-Type": "application/json", "X-Moniepoint-Signature": signature}

    def post_moniepoint(self, payload: dict[str, Any], secret: str | None = None) -> httpx.Response:
        body, headers = self.signed(payload, secret)
        return httpx.post(
            f"{self.ingest}/webhooks/moniepoint", content=body, headers=headers, timeout=30
        )

    async def post_many(self, payloads: list[dict[str, Any]], concurrency: int = 16) -> None:
        """Post webhooks concurrently, as a payroll run does; every one must be accepted."""
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=30) as client:

            async def post(payload: dict[str, Any]) -> None:
                body, headers = self.signed(payload)
                async with gate:
                    answer = await client.post(
                        f"{self.ingest}/webhooks/moniepoint", content=body, headers=headers
                    )
                assert answer.status_code == 200, answer.text

            await asyncio.gather(*(post(p) for p in payloads))

    def import_customers(
        self,
        tmp_path: Path,
        rows: list[tuple[str, str, str, int]],
        *,
        phone_confirmed: bool = True,
    ) -> None:
        """(account, phone, tier, late payments) rows, via the real `bridge customers import`."""
        csv = tmp_path / f"customers-{uuid.uuid4().hex[:6]}.csv"
        lines = ["account_number,email,phone,name,tier,late_payments,phone_confirmed"]
        lines += [
            f"{a},{a}@example.com,{phone},Ada {a},{tier},{late},{str(phone_confirmed).lower()}"
            for a, phone, tier, late in rows
        ]
        csv.write_text("\n".join(lines) + "\n")
        subprocess.run(
            [str(ROOT / ".venv/bin/bridge"), "customers", "import", str(csv)],
            check=True,
            env=self.env,
            capture_output=True,
        )

    def new_customer(
        self,
        tmp_path: Path,
        *,
        tier: str = "first_time",
        late: int = 0,
        phone: str = "08031234567",
        phone_confirmed: bool = True,
    ) -> str:
        account = new_account()
        self.import_customers(
            tmp_path, [(account, phone, tier, late)], phone_confirmed=phone_confirmed
        )
        return account

    def stages(self, reference: str) -> list[str]:
        story = self.audit(reference)
        return [e["stage"] for e in story["events"]] if story else []

    def trigger_calls(self, reference: str) -> list[dict[str, Any]]:
        calls = self.sandbox_get("calls", reference=reference)
        return [c for c in calls if c["path"].endswith("/trigger")]

    def sandbox_get(self, path: str, **params: str) -> Any:
        return httpx.get(f"{self.sandbox}/_sandbox/{path}", params=params, timeout=10).json()

    def sandbox_control(self, method: str, path: str, body: Any = None) -> None:
        response = httpx.request(method, f"{self.sandbox}/_sandbox/{path}", json=body, timeout=10)
        response.raise_for_status()

    def siteti_api(self, method: str, path: str) -> httpx.Response:
        """A signed call to the sandbox's Siteti API, as the dispatcher makes them."""
        base = self.env["SITETI_BASE_URL"]
        ts = int(time.time())
        url_path = base.split(str(self.ports["sandbox"]), 1)[1] + path
        return httpx.request(
            method,
            base + path,
            headers={
                "Authorization": f"Bearer {self.env['SITETI_API_KEY']}",
                "X-Siteti-Timestamp": str(ts),
                "X-Siteti-Signature": sign_siteti_request(
                    self.env["SITETI_SIGNING_SECRET"], ts, method, url_path, b""
                ),
            },
            timeout=10,
        )

    def audit(self, reference: str) -> dict[str, Any] | None:
        # An investigator's token: the first API_TOKENS entry is `support:<token>`.
        token = self.env["API_TOKENS"].split(",")[0].partition(":")[2]
        response = httpx.get(
            f"{self.receipts}/audit/{reference}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return response.json() if response.status_code == 200 else None


def kafka_settings(env: dict[str, str]) -> Settings:
    """Settings with the KAFKA_* variables of `env` (a process's environment)."""
    fields: dict[str, Any] = {k.lower(): v for k, v in env.items() if k.startswith("KAFKA_")}
    return Settings(**fields)


async def create_topic(bootstrap: str, name: str, **options: Any) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, EVENTS_TOPIC.partitions, 1)])
    finally:
        await admin.close()


async def admin_sql(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# Least privilege: the owner migrates, each service connects with its own login role (one per
# service for every pipeline: roles are per cluster). Their passwords derive from the owner's,
# so pipelines side by side (and other sessions) set the same ones.
E2E_SERVICES = ("ingest", "dispatcher", "receipts")


def service_dsn(owner_dsn: str, service: str) -> str:
    parts = urlsplit(owner_dsn)
    password = hashlib.sha256(f"{parts.password}:{service}".encode()).hexdigest()[:32]
    netloc = f"bridge_e2e_{service}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


async def prepare_database(owner_dsn: str, admin_dsn: str) -> None:
    """The schema applied as the owner (as `bridge db migrate`), and the services' logins."""
    pool = await create_pool(owner_dsn, max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    # In the same database for every pipeline: ensure_login_role's lock serialises them there.
    conn = await asyncpg.connect(admin_dsn)
    try:
        for service in E2E_SERVICES:
            login = urlsplit(service_dsn(owner_dsn, service))
            assert login.username and login.password
            await ensure_login_role(conn, login.username, service, login.password)
    finally:
        await conn.close()


async def delete_topic(bootstrap: str, name: str, **options: Any) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()


def new_account() -> str:
    return str(uuid.uuid4().int)[:10]


def new_reference() -> str:
    return f"MNP-{uuid.uuid4().hex[:12]}"


def payment(
    event: str, account: str, reference: str, amount: float = 5000.0, **extra: Any
) -> dict[str, Any]:
    """A Moniepoint webhook body as the contract shows it."""
    data = {
        "transactionReference": reference,
        "amount": amount,
        "currency": "NGN",
        "customer": {"accountNumber": account, "name": "Ada Obi", "email": "ada@example.com"},
        "timestamp": "2026-01-20T14:30:00Z",
        "description": "Office cleaning",
        "channel": "TRANSFER",
        "settlement": {"status": "PENDING"},
        **extra,
    }
    return {"event": event, "data": data}


def post_payment(pipeline: Pipeline, account: str) -> str:
    """Posts a new payment.successful webhook for `account` (accepted); its event's reference."""
    ref = new_reference()
    assert pipeline.post_moniepoint(payment("payment.successful", account, ref)).status_code == 200
    return f"moniepoint:{ref}"


def on_plan(per_minute: int, dispatchers: int = 1, **overrides: str) -> Pipeline:
    """A pipeline on the shared stack whose Siteti (the sandbox) has a plan of `per_minute`
    calls a minute, the bridge configured for the same."""
    return make_pipeline(
        stack_env(),
        dispatchers=dispatchers,
        SITETI_RATE_LIMIT_PER_MINUTE=str(per_minute),
        SANDBOX_RATE_LIMIT_PER_MINUTE=str(per_minute),
        **overrides,
    )


def make_pair(per_minute: int, **overrides: str) -> Pipeline:
    """Two dispatcher instances on a plan of `per_minute` calls a minute."""
    return on_plan(per_minute, dispatchers=2, **overrides)


def stack_env() -> dict[str, str]:
    lines = (ROOT / ".stack/env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def make_pipeline(stack_env: dict[str, str], dispatchers: int = 1, **overrides: str) -> Pipeline:
    """Processes on free ports; `dispatchers` instances share one consumer group."""
    names = ["sandbox", "ingest", "receipts", "console"] + [
        f"dispatcher-{i}" for i in range(1, dispatchers + 1)
    ]
    ports = {name: free_port() for name in names}
    run_id = uuid.uuid4().hex[:12]
    api_key, signing_secret, webhook_secret = (secrets.token_hex(16) for _ in range(3))
    moniepoint_secret = secrets.token_hex(32)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SITETI_", "SANDBOX_"))},
        **stack_env,
        "BRIDGE_ENV_FILE": str(ROOT / ".stack/env"),
        "SITETI_BASE_URL": f"http://127.0.0.1:{ports['sandbox']}/v2.6/accounts/acc_sandbox",
        "SITETI_API_KEY": api_key,
        "SITETI_SIGNING_SECRET": signing_secret,
        "SITETI_WEBHOOK_SECRETS": webhook_secret,
        "MONIEPOINT_WEBHOOK_SECRETS": f"{secrets.token_hex(8)},{moniepoint_secret}",
        "API_TOKENS": f"support:{secrets.token_hex(24)},analyst:{secrets.token_hex(24)}",
        # Fast retries, so that "Siteti unreachable" settles in about a second.
        "SITETI_RETRY_BASE_SECONDS": "0.05",
        "SITETI_RETRY_MAX_SECONDS": "0.2",
        "SITETI_TIMEOUT_SECONDS": "2",
        "MISSING_CONTACT_WAIT_SECONDS": "1",
        "INGEST_PORT": str(ports["ingest"]),
        # One process: pipelines run side by side on two cores, and tests stop and kill
        # ingest by its pid (test_ingest_workers runs several).
        "INGEST_WORKERS": "1",
        "RECEIPTS_PORT": str(ports["receipts"]),
        # A topic and a consumer group of its own: pipelines running side by side (and the
        # demo) never take each other's events.
        "EVENTS_TOPIC": f"test.bridge.events.{run_id}",
        "DATABASE_URL": urlsplit(stack_env["DATABASE_URL"])
        ._replace(path=f"/bridge_test_{run_id}")
        .geturl(),
        "DISPATCHER_GROUP_ID": f"siteti-bridge-dispatcher-test-{run_id}",
        "SANDBOX_PORT": str(ports["sandbox"]),
        "SANDBOX_API_KEYS": api_key,
        "SANDBOX_SIGNING_SECRET": signing_secret,
        "SANDBOX_WEBHOOK_SECRETS": webhook_secret,
        "SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{ports['receipts']}/siteti/webhooks",
        "SANDBOX_DELAY_SENT_SECONDS": "0.05",
        "SANDBOX_DELAY_DELIVERED_SECONDS": "0.1",
        "SANDBOX_DELAY_READ_SECONDS": "0.2",
        "SANDBOX_RATE_LIMIT_PER_MINUTE": "100000",
        "SITETI_RATE_LIMIT_PER_MINUTE": "100000",
        # Off unless a module turns them on (test_pacing.py): the others post bursts of one
        # amount to one number (payroll runs, streams), which pacing would rightly spread
        # over minutes and the double-fire check hold for review.
        "PAIR_MIN_INTERVAL_SECONDS": "0",
        "DOUBLE_FIRE_WINDOW_SECONDS": "0",
        **overrides,
    }
    pipeline = Pipeline(env, ports, moniepoint_secret)
    pipeline.add("sandbox", "siteti_sandbox", "/readyz", "sandbox")
    owner = env["DATABASE_URL"]
    pipeline.add(
        "receipts", "receipts", "/readyz", "receipts", DATABASE_URL=service_dsn(owner, "receipts")
    )
    pipeline.add("ingest", "ingest", "/readyz", "ingest", DATABASE_URL=service_dsn(owner, "ingest"))
    # The operations console, on the first dispatcher's admin API (it needs no database).
    pipeline.add(
        "console",
        "console",
        "/readyz",
        "console",
        CONSOLE_PORT=str(ports["console"]),
        CONSOLE_ADMIN_URL=f"http://127.0.0.1:{ports['dispatcher-1']}",
        CONSOLE_RECEIPTS_URL=f"http://127.0.0.1:{ports['receipts']}",
        CONSOLE_INGEST_URL=f"http://127.0.0.1:{ports['ingest']}",
    )
    for i in range(1, dispatchers + 1):
        name = f"dispatcher-{i}"
        pipeline.add(
            name,
            "dispatcher",
            "/readyz",
            name,
            DISPATCHER_INSTANCE=name,
            DISPATCHER_METRICS_PORT=str(ports[name]),
            DISPATCHER_DATADIR=str(ROOT / f".stack/faust/e2e-{name}"),
            DATABASE_URL=service_dsn(owner, "dispatcher"),
        )
    return pipeline


@contextmanager
def running(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline provisioned and started for the block, then stopped and dropped."""
    pipeline.provision()
    pipeline.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()
        pipeline.deprovision()


def wait_for(predicate: Any, timeout: float = 20, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s (last value: {value!r})")
        time.sleep(interval)
