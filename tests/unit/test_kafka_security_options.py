"""The Kafka security settings (bridge.kafka.client_options, faust_credentials) and the topic
rules (bridge.topics: replicas, min.insync.replicas, retention) without a broker."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol

from bridge.config import Settings
from bridge.events import AUDIT_TOPIC, EVENTS_TOPIC
from bridge.kafka import KafkaSecurityError, client_options, faust_credentials
from bridge.topics import DAY_MS, TopicPolicy, TopicPolicyError, lowered_configs, read_configs

from ..secure_kafka import make_certificates


def settings(**fields: Any) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def cafile(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_text(make_certificates()[0])
    return str(path)


def sasl_ssl(cafile: str, **fields: Any) -> Settings:
    base: dict[str, Any] = {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "bridge",
        "kafka_sasl_password": "s3cret",
        "kafka_ssl_cafile": cafile,
    }
    return settings(**{**base, **fields})


def test_plaintext_is_the_default() -> None:
    assert client_options(settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings()) is None


def test_sasl_ssl_gives_credentials_and_a_verifying_context(cafile: str) -> None:
    options = client_options(sasl_ssl(cafile, kafka_security_protocol="sasl_ssl"))
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bridge",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # ours, not the system's


def test_faust_gets_the_same_connection(cafile: str) -> None:
    sasl = faust_credentials(sasl_ssl(cafile))
    assert isinstance(sasl, SASLCredentials)
    assert sasl.protocol is AuthProtocol.SASL_SSL and sasl.mechanism.value == "SCRAM-SHA-512"
    assert (sasl.username, sasl.password) == ("bridge", "s3cret") and sasl.ssl_context
    plain = faust_credentials(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    assert isinstance(plain, SASLCredentials) and plain.protocol is AuthProtocol.SASL_PLAINTEXT
    tls = faust_credentials(settings(kafka_security_protocol="SSL", kafka_ssl_cafile=cafile))
    assert isinstance(tls, SSLCredentials) and tls.protocol is AuthProtocol.SSL


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kafka_security_protocol": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "KAFKA_SASL_MECHANISM must be one of"),
        ({"kafka_sasl_password": ""}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (
            {"kafka_ssl_cafile": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE=/nonexistent/ca.pem is not",
        ),
        ({"kafka_ssl_keyfile": __file__}, "KAFKA_SSL_KEYFILE needs KAFKA_SSL_CERTFILE"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "does not use them"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT"},
            "KAFKA_SSL_CAFILE set, but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused(
    cafile: str, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=message) as refused:
        client_options(sasl_ssl(cafile, **fields))
    assert "s3cret" not in str(refused.value)  # errors may be logged: never the password


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    ca, chain, key = make_certificates()
    paths = {}
    for name, pem in (("ca", ca), ("cert", chain), ("key", key)):
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_text(pem)
    options = client_options(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=str(paths["ca"]),
            kafka_ssl_certfile=str(paths["cert"]),
            kafka_ssl_keyfile=str(paths["key"]),
        )
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    with pytest.raises(ssl.SSLError):  # a key that is not the certificate's
        client_options(
            settings(
                kafka_security_protocol="SSL",
                kafka_ssl_certfile=str(paths["cert"]),
                kafka_ssl_keyfile=str(_other_key(tmp_path)),
            )
        )


def _other_key(tmp_path: Path) -> Path:
    path = tmp_path / "other-key.pem"
    path.write_text(make_certificates()[2])
    return path


def test_one_replica_needs_the_single_broker_flag() -> None:
    with pytest.raises(TopicPolicyError, match="KAFKA_SINGLE_BROKER=true"):
        TopicPolicy.from_settings(settings(kafka_topic_replication_factor=1))
    with pytest.raises(TopicPolicyError, match="at least 1"):
        TopicPolicy(0, True, 90).check()
    with pytest.raises(TopicPolicyError, match="RETENTION_DAYS"):
        TopicPolicy(3, False, 0).check()
    single = TopicPolicy.from_settings(
        settings(kafka_topic_replication_factor=1, kafka_single_broker=True)
    )
    assert single.min_insync_replicas == 1


def test_production_topics_have_three_replicas_two_in_sync_and_capped_retention() -> None:
    policy = TopicPolicy.from_settings(
        settings(kafka_topic_replication_factor=3, retention_days=14)
    )
    events, audit = policy.new_topic(EVENTS_TOPIC), policy.new_topic(AUDIT_TOPIC)
    assert (events.name, events.num_partitions, events.replication_factor) == (
        EVENTS_TOPIC.name,
        EVENTS_TOPIC.partitions,
        3,
    )
    assert events.topic_configs == {
        "retention.ms": str(EVENTS_TOPIC.retention_ms),  # 7 days: shorter than 14
        "min.insync.replicas": "2",
    }
    assert audit.topic_configs["retention.ms"] == str(14 * DAY_MS)  # 30 days, capped
    assert TopicPolicy(2, False, 90).min_insync_replicas == 2
    assert TopicPolicy(5, False, 90).min_insync_replicas == 2


def test_longer_retention_is_lowered_keeping_the_topics_other_settings() -> None:
    entries: list[tuple[Any, ...]] = [
        ("retention.ms", "-1", False, 1, False, []),
        ("max.message.bytes", "2000000", False, 1, False, []),
        ("cleanup.policy", "delete", False, 5, False, []),  # a default: not sent back
        ("min.insync.replicas", "2", False, 4, False, []),  # the broker's: not sent back
    ]
    overrides, retention = read_configs(entries)
    assert (overrides, retention) == ({"retention.ms": "-1", "max.message.bytes": "2000000"}, -1)
    assert lowered_configs(overrides, retention, 10 * DAY_MS) == {
        "retention.ms": str(10 * DAY_MS),
        "max.message.bytes": "2000000",
    }
    assert lowered_configs({}, 100 * DAY_MS, 90 * DAY_MS) == {"retention.ms": str(90 * DAY_MS)}
    assert lowered_configs({"retention.ms": "1000"}, 1000, 90 * DAY_MS) is None
    assert lowered_configs({}, 90 * DAY_MS, 90 * DAY_MS) is None  # the broker's, short enough
