"""Kafka clients: their connection security, and one durable producer per process (acks=all
via idempotence)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner, murmur2

from .logs import get_logger

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from .config import Settings

log = get_logger(__name__)

# Record headers as aiokafka takes them (the event's `traceparent`: bridge.correlation).
Headers = list[tuple[str, bytes]]

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class KafkaSecurityError(ValueError):
    """The KAFKA_* security settings cannot make a working connection (says which to fix)."""


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka's keyword arguments for the configured security, for every client (producer,
    consumer, admin). Raises `KafkaSecurityError` on settings that cannot work, so a
    misconfigured process stops at start instead of retrying a refused connection forever."""
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise KafkaSecurityError(
            f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)} "
            f"(got {settings.kafka_security_protocol!r})"
        )
    options: dict[str, Any] = {"security_protocol": protocol}
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    if sasl:
        options.update(_sasl_options(settings, protocol))
    elif settings.kafka_sasl_username or settings.kafka_sasl_password:
        # Credentials that are never sent: the operator believes the connection authenticates.
        raise KafkaSecurityError(
            f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set, but KAFKA_SECURITY_PROTOCOL="
            f"{protocol} does not use them (SASL_SSL or SASL_PLAINTEXT does)"
        )
    files = _tls_files(settings)
    if tls:
        options["ssl_context"] = create_ssl_context(
            cafile=files.get("KAFKA_SSL_CAFILE"),
            certfile=files.get("KAFKA_SSL_CERTFILE"),
            keyfile=files.get("KAFKA_SSL_KEYFILE"),
        )
    elif files:
        raise KafkaSecurityError(
            f"{', '.join(files)} set, but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
            "(SSL or SASL_SSL does)"
        )
    return options


def _sasl_options(settings: Settings, protocol: str) -> dict[str, str]:
    mechanism = settings.kafka_sasl_mechanism.strip().upper()
    if mechanism not in SASL_MECHANISMS:
        raise KafkaSecurityError(
            f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)} "
            f"(got {settings.kafka_sasl_mechanism!r})"
        )
    if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
        raise KafkaSecurityError(
            f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password,
    }


def _tls_files(settings: Settings) -> dict[str, str]:
    """The TLS files that are set, by variable name; each must be a readable file."""
    files = {
        name: value
        for name, value in (
            ("KAFKA_SSL_CAFILE", settings.kafka_ssl_cafile),
            ("KAFKA_SSL_CERTFILE", settings.kafka_ssl_certfile),
            ("KAFKA_SSL_KEYFILE", settings.kafka_ssl_keyfile),
        )
        if value
    }
    for name, path in files.items():
        if not Path(path).is_file():
            raise KafkaSecurityError(f"{name}={path} is not a file")
    # A certificate file may hold its key too; a key alone proves nothing.
    if "KAFKA_SSL_KEYFILE" in files and "KAFKA_SSL_CERTFILE" not in files:
        raise KafkaSecurityError("KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE (mutual TLS)")
    return files


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """`client_options` as faust's `broker_credentials`: faust builds its consumers and
    producer from these (faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth)."""
    # Imported here: only the dispatcher runs faust; ingest and receipts need not load it.
    from faust.auth import SASLCredentials, SSLCredentials

    options = client_options(settings)
    context = options.get("ssl_context")
    if "sasl_mechanism" in options:
        # faust derives the protocol: SASL_SSL with a context, SASL_PLAINTEXT without.
        return SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=context,
        )
    return None if context is None else SSLCredentials(context)


# After one of these the broker refuses every later batch of this producer id on the
# partition, and aiokafka keeps the id and its sequence numbers: only a new producer (new id,
# sequences from 0) sends again. A broker outage longer than request_timeout_ms causes it:
# aiokafka drops a batch that waited too long for a leader after numbering it, so the next
# batch's sequence has a gap.
_POISONED = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, ProducerFenced)
_STOP_SECONDS = 30.0


class KeyPartitioner:
    """Kafka's default partitioning (the Java client's murmur2 of the key, as aiokafka's
    `DefaultPartitioner`: every client puts a key on the same partition), with each key's
    hash remembered. Keys are customers, who recur; aiokafka's murmur2 is pure Python and
    cost more per record than the rest of queuing it."""

    def __init__(self, remembered: int = 100_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._remembered = remembered

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            chosen: int = DefaultPartitioner()(key, all_partitions, available)
            return chosen
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._remembered:
                self._hashes.clear()  # bounded: a new start costs one murmur2 per key
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def new_producer(
    bootstrap_servers: str, options: Mapping[str, Any] | None = None
) -> AIOKafkaProducer:
    """`options`: `client_options`' connection security (none: plaintext)."""
    # Idempotence forces acks=all and dedupes the producer's own retries; lz4 and a short
    # linger batch concurrent webhooks without adding visible latency.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        compression_type="lz4",
        max_batch_size=65536,
        request_timeout_ms=15000,
        partitioner=KeyPartitioner(),
        **(options or {}),
    )


class DurableProducer:
    """`new_producer`'s producer that lives through broker restarts.

    It starts lazily (again) when a start failed, and it replaces itself when the broker has
    lost track of its sequence numbers, which aiokafka never recovers from. Records already
    handed to the replaced producer fail or go out as they would have; a caller that did not
    get an acknowledgement retries, and consumers dedupe.
    """

    def __init__(self, bootstrap_servers: str, options: Mapping[str, Any] | None = None) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._options = options
        self._producer = new_producer(bootstrap_servers, options)
        self._started = False
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.replacements = 0

    async def start(self) -> None:
        """Connect; raises if the broker cannot be reached (a later send tries again)."""
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            producer = self._producer
            try:
                await producer.start()
            except BaseException:
                # An aiokafka producer that failed to start cannot be started again.
                self._replace(producer)
                raise
            self._started = True

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> asyncio.Future[Any]:
        """Queue a record; the returned future resolves once the broker acknowledged it."""
        await self.start()
        producer = self._producer
        future: asyncio.Future[Any] = await producer.send(
            topic, value=value, key=key, headers=headers
        )
        future.add_done_callback(functools.partial(self._check, producer))
        return future

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None
    ) -> Any:
        return await (await self.send(topic, value, key, headers))

    async def check_connection(self) -> None:
        """A metadata round trip: raises when the broker cannot be reached."""
        await self.start()
        await self._producer.client.fetch_all_metadata()

    async def stop(self) -> None:
        producer, started = self._producer, self._started
        self._started = False
        if started:
            await producer.stop()
        if self._retiring:
            await asyncio.gather(*self._retiring)

    def _check(self, producer: AIOKafkaProducer, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or not isinstance(future.exception(), _POISONED):
            return
        if producer is self._producer:  # the first failure replaces it, not every one
            log.warning("kafka_producer_replaced", reason=repr(future.exception()))
            self._replace(producer)

    def _replace(self, producer: AIOKafkaProducer) -> None:
        self._producer = new_producer(self._bootstrap_servers, self._options)
        self._started = False
        self.replacements += 1
        task = asyncio.get_running_loop().create_task(_stop_quietly(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    # Its pending batches fail or drain; either way it must not outlive its replacement.
    with suppress(Exception):
        await asyncio.wait_for(producer.stop(), _STOP_SECONDS)


# What the sources publish through: the project's producer, or aiokafka's own (tests).
Publisher = AIOKafkaProducer | DurableProducer


async def publish(
    producer: DurableProducer,
    topic: str,
    key: bytes,
    value: bytes,
    within: float,
    headers: Headers | None = None,
) -> None:
    """Wait until the broker has acknowledged the record (acks=all) or raise.

    A timeout is not retried here: the producer retries internally, and a caller that
    answers non-2xx lets the provider redeliver, which the dispatcher dedupes.
    """
    # A timeout scope, not wait_for: no task of its own for each record.
    async with asyncio.timeout(within):
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)
