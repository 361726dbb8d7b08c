"""`bridge privacy scan`: show an auditor that no clear phone number is stored anywhere but
the directory's sealed columns (docs/data-protection.md).

It looks for customers' numbers in a PostgreSQL dump of the bridge's database, every Redis
key and value, the raw bytes (key, value, headers) of every record of every Kafka topic, and
every log file, and prints where each place stands. The numbers are every number in the
directory (opened with BRIDGE_DATA_KEYS) unless given. A number is looked for in the forms
people write it: international digits, national (0…), and its last nine digits, which any
other writing of it contains (spaces aside: give such a form with --number too).
Found numbers are shown by their last four digits only. Exit status 1 when any is found.
`--json`: one object a line per place searched.
"""

from __future__ import annotations

import asyncio
import glob
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from bridge.cache import new_redis
from bridge.config import Settings, get_settings
from bridge.db import create_pool
from bridge.kafka import client_options
from bridge.phones import to_siteti
from bridge.protect import last_four

from .failures import POSTGRES, Unreachable, without_userinfo
from .keys import configured_keys
from .output import JsonOpt, print_json_lines

app = typer.Typer(no_args_is_help=True, help="Customer data protection checks.")


def needles(numbers: Iterable[str], region: str = "NG") -> dict[bytes, str]:
    """Byte strings to look for → the number (masked) they stand for."""
    found: dict[bytes, str] = {}
    for raw in numbers:
        digits = to_siteti(raw, region, trusted=True) or "".join(c for c in raw if c.isdigit())
        if len(digits) < 9:
            continue
        label = last_four(digits) or "?"
        for form in {digits, digits[-9:], raw.strip()}:
            found[form.encode()] = label
    return found


@dataclass
class Place:
    """One place searched: how much of it, and which numbers were found in which item."""

    name: str
    items: int = 0
    size: int = 0
    hits: dict[str, set[str]] = field(default_factory=dict)  # item → masked numbers

    def search(self, item: str, data: bytes, looking_for: dict[bytes, str], count: int = 1) -> None:
        self.items += count
        self.size += len(data)
        for needle, label in looking_for.items():
            if needle in data:
                self.hits.setdefault(item, set()).add(label)


def _pg_dump() -> str:
    found = shutil.which("pg_dump") or max(
        glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), default=""
    )
    if not found:
        raise typer.BadParameter("pg_dump not found: install PostgreSQL's client tools")
    return found


def scan_postgres(dsn: str, looking_for: dict[bytes, str]) -> Place:
    place = Place("postgresql dump")
    dump = subprocess.run(  # noqa: S603 - our own binary, the configured DSN
        [_pg_dump(), "--data-only", "--no-owner", dsn], capture_output=True, check=False
    )
    if dump.returncode != 0:
        error = " ".join(dump.stderr.decode(errors="replace").split())
        if "connection to server" in error:  # pg_dump's words for every failure to connect
            raise Unreachable(POSTGRES, "connection refused" if "refused" in error else error)
        raise RuntimeError(f"pg_dump failed: {without_userinfo(error)[:300]}")
    # Per table, so a hit names where it is.
    table = "(schema)"
    chunks: dict[str, list[bytes]] = {}
    for line in dump.stdout.splitlines():
        if line.startswith(b"COPY "):
            table = line.split(b" ", 2)[1].decode(errors="replace")
        chunks.setdefault(table, []).append(line)
    for name, lines in chunks.items():
        place.search(name, b"\n".join(lines), looking_for)
    return place


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def _value(redis: Redis, key: bytes) -> bytes:
    """A key's value as bytes, whatever its type (streams and modules' types: nothing)."""
    kind = _bytes(await redis.type(key))
    parts: list[object] = []
    if kind == b"string":
        parts = [await redis.get(key)]
    elif kind == b"hash":
        parts = [k + b"=" + v for k, v in (await redis.hgetall(key)).items()]  # type: ignore[operator]
    elif kind == b"list":
        parts = list(await redis.lrange(key, 0, -1))
    elif kind == b"set":
        parts = list(await redis.smembers(key))
    elif kind == b"zset":
        parts = list(await redis.zrange(key, 0, -1))
    return b"\n".join(_bytes(part) for part in parts if part is not None)


async def scan_redis(redis: Redis, looking_for: dict[bytes, str]) -> Place:
    place = Place("redis keys and values")
    async for key in redis.scan_iter(count=1000):
        place.search(
            key.decode(errors="replace"), key + b"\n" + await _value(redis, key), looking_for
        )
    return place


async def _all_partitions(settings: Settings) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, **client_options(settings)
    )
    await admin.start()
    try:
        described = await admin.describe_topics(await admin.list_topics())
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]


async def scan_kafka(settings: Settings, looking_for: dict[bytes, str]) -> Place:
    """Every record of every topic, from its first retained offset to its end."""
    place = Place("kafka records")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        **client_options(settings),
    )
    try:
        await consumer.start()  # inside: a start that fails must still close what it opened
        partitions = await _all_partitions(settings)
        if not partitions:
            return place
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        todo = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=2000)
            if not batch:
                break
            for tp, records in batch.items():
                data = b"".join(
                    (r.key or b"")
                    + b"\n"
                    + (r.value or b"")
                    + b"\n"
                    + b"".join(k.encode() + v for k, v in r.headers)
                    for r in records
                )
                place.search(f"{tp.topic}/{tp.partition}", data, looking_for, len(records))
                if records[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    return place


def scan_logs(directories: Sequence[Path], looking_for: dict[bytes, str]) -> Place:
    place = Place("log files")
    for directory in directories:
        for path in sorted(directory.rglob("*.log*")):
            if path.is_file():
                place.search(str(path), path.read_bytes(), looking_for)
    return place


async def directory_numbers(settings: Settings) -> list[str]:
    keys = configured_keys(settings)
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        rows = await pool.fetch("SELECT phone FROM customers WHERE phone IS NOT NULL")
    finally:
        await pool.close()
    return [keys.open(row["phone"], "phone") for row in rows]


async def scan_all(settings: Settings, numbers: Sequence[str], logs: Sequence[Path]) -> list[Place]:
    looking_for = needles(numbers, settings.default_country)
    redis = new_redis(settings.redis_url)
    try:
        places = [
            await asyncio.to_thread(scan_postgres, settings.database_url, looking_for),
            await scan_redis(redis, looking_for),
            await scan_kafka(settings, looking_for),
            scan_logs(logs, looking_for),
        ]
    finally:
        await redis.aclose()
    return places


@app.command("scan")
def scan(
    number: Annotated[
        list[str] | None, typer.Option("--number", help="A number to look for (repeatable)")
    ] = None,
    logs: Annotated[
        list[Path] | None, typer.Option("--logs", help="A directory of log files (repeatable)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Look for customers' numbers in PostgreSQL, Redis, Kafka and the logs."""
    settings = get_settings()
    numbers = number or asyncio.run(directory_numbers(settings))
    if not numbers:
        typer.echo("no numbers to look for: the directory has none; give --number", err=True)
        raise typer.Exit(code=2)
    places = asyncio.run(scan_all(settings, numbers, logs or [Path(".stack/logs")]))
    if as_json:
        print_json_lines(
            {
                "place": p.name,
                "items": p.items,
                "bytes": p.size,
                "found": {item: sorted(labels) for item, labels in p.hits.items()},
            }
            for p in places
        )
    else:
        typer.echo(f"looked for {len(numbers)} numbers")
        for p in places:
            verdict = "clean" if not p.hits else f"FOUND in {len(p.hits)}"
            typer.echo(f"  {p.name:<24} {p.items:>7} items {p.size:>12,} bytes  {verdict}")
            for item, labels in sorted(p.hits.items()):
                typer.echo(f"      {item}: {', '.join(sorted(labels))}")
    if any(p.hits for p in places):
        raise typer.Exit(code=1)
