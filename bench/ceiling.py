"""Ingest against the ceilings of Python on this machine: the figure of record for ingest.

    .venv/bin/python -m bench.ceiling [--connections 500] [--duration 20] [--threads 2] [--json]

Needs the local stack (`make stack-up`: Kafka; Redis for ingest's defences) and wrk (installed
with apt-get when missing and run as root; else `sudo apt-get install wrk`). Under the same
load, one after the other, it drives:

- `bare`: an ASGI app answering 200 without reading anything;
- `bare+kafka`: an ASGI app that reads the body, sends it with aiokafka's `send_and_wait`
  (bridge.kafka.new_producer: acks=all, idempotent, lz4, linger 2 ms) and then answers 200;
- `ingest`: the bridge's ingest (`python -m ingest`, real settings: the stack's Kafka and
  Redis, sealing keys, a Moniepoint secret of the run's own, LOG_LEVEL=INFO), dispatchers
  not running.

Each is one process served by `bridge.edge.serve` with ingest's options (uvicorn's `auto`
loop and http, i.e. uvloop and httptools; log level warning; no access log; no proxy
headers). wrk posts signed Moniepoint webhooks, cycling through `--bodies` distinct ones (a
reference and one of 500 accounts each, so Kafka keys spread over the partitions): HMAC
cannot be computed in wrk's Lua, so they are signed beforehand. Each endpoint gets a warm-up
run before the measured one. Both Kafka endpoints write to a topic of the run's own (deleted
at the end). Printed: requests/s, p50/p99 (wrk's), non-2xx answers, socket errors, and
ingest's share of each ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bridge.config import Settings
from bridge.edge import serve
from bridge.kafka import client_options, new_producer
from bridge.signing import sign
from ingest.__main__ import usable_cpus
from tests.e2e.harness import (
    ROOT,
    create_topic,
    delete_topic,
    free_port,
    kafka_settings,
    payment,
    stack_env,
)
from tests.process_tools import stop_process

from . import profile

LUA = Path(__file__).with_suffix(".lua")
LOGS = ROOT / ".stack/logs/bench"
PATH = "/webhooks/moniepoint"
ACCOUNTS = 500
_OK = {"type": "http.response.body", "body": b'{"status":"accepted"}'}
_OK_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"21")],
}


# --- the two ceilings (served by `--serve bare|kafka`) -----------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(_OK_START)
    await send(_OK)


class KafkaApp:
    """Reads the body, waits for Kafka's acknowledgement (acks=all), answers 200."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.settings = Settings()
        self.producer: AIOKafkaProducer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            # Made in the loop that serves: aiokafka's clients belong to their event loop.
            options = client_options(self.settings)
            self.producer = new_producer(self.settings.kafka_bootstrap_servers, options)
            await self.producer.start()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await self.producer.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "POST":
            # A key per body, as ingest keys by customer: the records spread over partitions.
            key = hashlib.blake2b(body, digest_size=8).digest()
            await self.producer.send_and_wait(self.topic, body, key=key)
        await send(_OK_START)
        await send(_OK)


# --- running endpoints and wrk ------------------------------------------------------------


@dataclass
class Result:
    endpoint: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    load_before: float  # the 1-minute load average when the measured run started


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: sudo apt-get install wrk")
    print("installing wrk with apt-get", file=sys.stderr)
    apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=apt)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=apt)
    return shutil.which("wrk") or sys.exit("wrk still not found after apt-get install")


def ingest_env(run: str) -> tuple[dict[str, str], str]:
    """Ingest's environment for a benchmark run (the stack's Kafka and Redis, sealing keys, a
    topic and a Moniepoint secret of the run's own, LOG_LEVEL=INFO), and that secret."""
    secret = uuid.uuid4().hex * 2
    env = {**os.environ, **stack_env(), "BRIDGE_ENV_FILE": str(ROOT / ".stack/env")}
    env |= {
        "EVENTS_TOPIC": f"bench.{run}.{uuid.uuid4().hex[:12]}",
        "MONIEPOINT_WEBHOOK_SECRETS": secret,
        "LOG_LEVEL": "INFO",
    }
    return env, secret


def signed_webhooks(count: int, secret: str) -> list[tuple[bytes, str]]:
    """(body, signature) of `count` distinct signed Moniepoint webhooks over ACCOUNTS
    customers (their Kafka keys spread over the partitions)."""
    signed = []
    for i in range(count):
        account = f"{3000000000 + i % ACCOUNTS}"
        payload = payment("payment.successful", account, f"MNP-BENCH-{i:08d}")
        body = json.dumps(payload, separators=(",", ":")).encode()
        signed.append((body, sign(secret, body)))
    return signed


def write_bodies(path: Path, count: int, secret: str) -> None:
    """The webhooks as wrk's script reads them: `signature<TAB>body` lines."""
    lines = [f"{signature}\t{body.decode()}" for body, signature in signed_webhooks(count, secret)]
    path.write_text("\n".join(lines) + "\n")


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url}: the process exited ({process.returncode}); see {log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    sys.exit(f"{url} not ready in {timeout} s; see {log}")


def run_wrk(wrk: str, port: int, bodies: Path, args: argparse.Namespace, seconds: int) -> Any:
    command = [
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}{PATH}",
        "--",
        str(bodies),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("CEILING_RESULT "):
            return json.loads(line.removeprefix("CEILING_RESULT "))
    sys.exit(f"wrk printed no result:\n{out}")


def measure(
    name: str,
    command: list[str],
    env: dict[str, str],
    ready_path: str,
    run: tuple[str, Path, argparse.Namespace],
) -> Result:
    """Start the endpoint, warm it up, measure it, stop it."""
    wrk, bodies, args = run
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"ceiling-{name}.log"
    process = subprocess.Popen(
        [sys.executable, *command],
        env={**env, "INGEST_PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}{ready_path}", log)
        print(f"{name}: warming up {args.warmup} s", file=sys.stderr)
        run_wrk(wrk, port, bodies, args, args.warmup)
        time.sleep(1)
        load = os.getloadavg()[0]
        print(f"{name}: measuring {args.duration} s (load {load:.2f})", file=sys.stderr)
        spy = None
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            stacks = args.profile / f"{name}.txt"
            # Started a second in, stopped a second before the end: load only, no ramps.
            spy = profile.record(process.pid, max(1, args.duration - 2), stacks)
        raw = run_wrk(wrk, port, bodies, args, args.duration)
        if spy is not None:
            spy.wait()
            print(profile.render(name, profile.summary(stacks)), file=sys.stderr)
    finally:
        stop_process(process)
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return Result(
        endpoint=name,
        requests_per_second=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=raw["requests"],
        non_2xx=raw["non_2xx"],
        socket_errors=errors,
        load_before=load,
    )


def table(results: list[Result], args: argparse.Namespace, load: float) -> str:
    by_name = {r.endpoint: r for r in results}
    bare, kafka = by_name.get("bare"), by_name.get("bare+kafka")
    lines = [
        f"{args.connections} connections, {args.threads} wrk threads, {args.duration} s each"
        f" (after {args.warmup} s of warm-up), {os.cpu_count()} cores, load {load:.2f} before"
        " the run (the load column: the 1-minute load average as each measured run started)",
        "",
        "| endpoint | requests/s | p50 | p99 | non-2xx | socket errors | load | share of"
        " bare | share of bare+kafka |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        shares = ["", ""]
        if r.endpoint.startswith("ingest"):
            shares = [
                f"{r.requests_per_second / c.requests_per_second:.0%}" if c else ""
                for c in (bare, kafka)
            ]
        lines.append(
            f"| {r.endpoint} | {r.requests_per_second:,.0f} | {r.p50_ms:.1f} ms"
            f" | {r.p99_ms:.1f} ms | {r.non_2xx} | {r.socket_errors} | {r.load_before:.2f}"
            f" | {shares[0]} | {shares[1]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--duration", type=int, default=20, help="seconds measured per endpoint")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up per endpoint")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--bodies", type=int, default=10000, help="distinct signed webhooks")
    parser.add_argument(
        "--only", nargs="*", default=None, help="endpoints to run (bare, bare+kafka, ingest…)"
    )
    parser.add_argument(
        "--ingest-from",
        type=Path,
        help="also run the ingest of another checkout (its shared/ and services/ingest/), as"
        " the row `ingest@<dir name>`: a before/after comparison in one run",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile each endpoint with py-spy during its measured run: collapsed stacks in"
        " this directory, the costliest functions printed on stderr",
    )
    parser.add_argument("--serve", choices=("bare", "kafka"), help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        app = bare_app if args.serve == "bare" else KafkaApp(args.topic)
        # On INGEST_PORT, as ingest: every endpoint is started the same way.
        port = int(os.environ["INGEST_PORT"])
        serve(app, "127.0.0.1", port, log_level="warning", proxy_headers=False)
        return

    wrk = ensure_wrk()
    load = os.getloadavg()[0]
    env, secret = ingest_env("ceiling")
    topic = env["EVENTS_TOPIC"]
    kafka = client_options(kafka_settings(env))
    asyncio.run(create_topic(env["KAFKA_BOOTSTRAP_SERVERS"], topic, **kafka))
    workers = usable_cpus()
    endpoints = {
        "bare": (["-m", "bench.ceiling", "--serve", "bare"], "/"),
        "bare+kafka": (["-m", "bench.ceiling", "--serve", "kafka", "--topic", topic], "/"),
        "ingest": (["-m", "ingest"], "/readyz"),
        f"ingest ×{workers} workers": (["-m", "ingest"], "/readyz"),
    }
    # The figure of record is per process; INGEST_WORKERS' default is measured on its own row.
    envs = {f"ingest ×{workers} workers": {**env, "INGEST_WORKERS": str(workers)}}
    env["INGEST_WORKERS"] = "1"
    if args.ingest_from:
        other = args.ingest_from.resolve()
        endpoints[f"ingest@{other.name}"] = (["-m", "ingest"], "/readyz")
        paths = os.pathsep.join(str(other / p) for p in ("shared", "services/ingest"))
        # Before the editable install's finder, so that checkout's modules are the ones run.
        envs[f"ingest@{other.name}"] = {**env, "PYTHONPATH": paths}
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bodies = Path(tmp) / "bodies.tsv"
            write_bodies(bodies, args.bodies, secret)
            for name, (command, ready_path) in endpoints.items():
                if args.only is None or name in args.only:
                    own_env = envs.get(name, env)
                    run = (wrk, bodies, args)
                    results.append(measure(name, command, own_env, ready_path, run))
    finally:
        asyncio.run(delete_topic(env["KAFKA_BOOTSTRAP_SERVERS"], topic, **kafka))
    if args.json:
        print(json.dumps({"load_before": load, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(table(results, args, load))


if __name__ == "__main__":
    main()
