"""A second, throwaway Kafka broker that only speaks SASL_SSL (SCRAM-SHA-512), for tests.

Same jars as the local stack (.stack/kafka-libs), KRaft, on free ports, with a CA and a broker
certificate made here and SCRAM users added when the storage is formatted. `secure_broker`
starts it and, at the end, stops it and removes its directory.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.config import Settings
from bridge.kafka import client_options

from .e2e.harness import kafka_settings
from .process_tools import stop_process

ROOT = Path(__file__).resolve().parents[1]
LIBS = ROOT / ".stack/kafka-libs"
LOG = ROOT / ".stack/logs/tests/secure-kafka.log"
MECHANISM = "SCRAM-SHA-512"
START_SECONDS = 60.0


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    cafile: Path
    username: str
    password: str

    def env(self, **changes: str) -> dict[str, str]:
        """The KAFKA_* variables a bridge process needs to reach it (`changes` override)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": self.username,
            "KAFKA_SASL_PASSWORD": self.password,
            "KAFKA_SSL_CAFILE": str(self.cafile),
            "KAFKA_SINGLE_BROKER": "true",
            **changes,
        }

    def settings(self, **changes: Any) -> Settings:
        return kafka_settings(self.env()).model_copy(update=changes)

    def options(self, **changes: Any) -> dict[str, Any]:
        return client_options(self.settings(**changes))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,  # Kafka's PEM key store reads PKCS#8 only
        serialization.NoEncryption(),
    ).decode()


def make_certificates() -> tuple[str, str, str]:
    """(CA certificate, broker certificate chain, broker key), PEM: the broker's is valid for
    127.0.0.1 and localhost, as hostname checks (aiokafka's and Kafka's) require."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bridge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(ca), _pem(broker) + _pem(ca), _pem(key)


def _inline(pem: str) -> str:
    # A properties value on one line: Properties.load turns each \n back into a newline.
    return pem.strip().replace("\n", "\\n")


def broker_properties(
    port: int, controller_port: int, data: Path, pems: tuple[str, str, str], admin: tuple[str, str]
) -> str:
    ca, chain, key = pems
    user, password = admin
    listener = f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
    jaas = (
        f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" '
        f'password="{password}";'
    )
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
            f"listeners={listener}",
            f"advertised.listeners={listener}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            # The broker's own (inter-broker) connections authenticate as the admin user.
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.certificate.chain={_inline(chain)}",
            f"ssl.keystore.key={_inline(key)}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.certificates={_inline(ca)}",
            f"log.dirs={data / 'logs'}",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=3",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


_JAVA_OPTS = [
    "-Xmx512m",
    "-Xms128m",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=warn",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn",
]


def _java(*args: str) -> list[str]:
    return ["java", *_JAVA_OPTS, "-cp", f"{LIBS}/*", *args]


@contextmanager
def secure_broker() -> Iterator[SecureKafka]:
    """A started SASL_SSL broker with users `bridge` (the one handed out) and `admin`."""
    if not (LIBS / ".complete").is_file():
        raise RuntimeError(f"no Kafka jars in {LIBS}; run `make stack-up`")
    workdir = Path(tempfile.mkdtemp(prefix="secure-kafka-"))
    pems = make_certificates()
    (workdir / "ca.pem").write_text(pems[0])
    admin = ("admin", secrets.token_urlsafe(18))
    kafka = SecureKafka(
        f"127.0.0.1:{_free_port()}", workdir / "ca.pem", "bridge", secrets.token_urlsafe(18)
    )
    port = int(kafka.bootstrap.rsplit(":", 1)[1])
    props = workdir / "server.properties"
    props.write_text(broker_properties(port, _free_port(), workdir, pems, admin))
    LOG.parent.mkdir(parents=True, exist_ok=True)
    popen: subprocess.Popen[bytes] | None = None
    try:
        with LOG.open("ab") as log:
            subprocess.run(
                _java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    _cluster_id(),
                    "-c",
                    str(props),
                    "--add-scram",
                    f"{MECHANISM}=[name={admin[0]},password={admin[1]}]",
                    "--add-scram",
                    f"{MECHANISM}=[name={kafka.username},password={kafka.password}]",
                ),
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_SECONDS,
            )
            popen = subprocess.Popen(
                _java("kafka.Kafka", str(props)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        asyncio.run(_wait_ready(kafka, popen))
        yield kafka
    finally:
        if popen is not None:
            stop_process(popen)
        shutil.rmtree(workdir, ignore_errors=True)


def _cluster_id() -> str:
    # What `StorageTool random-uuid` prints: 16 random bytes, URL-safe base64 without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


async def _wait_ready(kafka: SecureKafka, popen: subprocess.Popen[bytes]) -> None:
    """Until an authenticated client lists the topics (the listener up, SCRAM users loaded)."""
    deadline = time.monotonic() + START_SECONDS
    last: Exception | None = None
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"the secure broker exited ({popen.returncode}); see {LOG}")
        if not _listening(kafka.bootstrap):  # quietly: aiokafka logs every refused connection
            await asyncio.sleep(0.25)
            continue
        admin = AIOKafkaAdminClient(
            bootstrap_servers=kafka.bootstrap, request_timeout_ms=5000, **kafka.options()
        )
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:  # not up yet: refused, or SCRAM credentials not loaded
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
    raise RuntimeError(
        f"the secure broker was not ready in {START_SECONDS} s ({last!r}); see {LOG}"
    )


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True
