"""Create the bridge's topics idempotently: `python -m bridge.topics`.

Production topics survive a broker's loss: KAFKA_TOPIC_REPLICATION_FACTOR replicas (3) and
min.insync.replicas = min(2, replicas), so an acks=all write is on two brokers. One replica is
refused unless KAFKA_SINGLE_BROKER=true says the cluster has one broker (local stack, tests).
No topic keeps records longer than RETENTION_DAYS (they carry customer data): new topics get
the shorter of their own retention and that, existing ones with a longer one are lowered.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .config import Settings, get_settings
from .events import TOPICS, Topic
from .kafka import client_options
from .logs import get_logger

log = get_logger(__name__)

DAY_MS = 24 * 3600 * 1000
# DescribeConfigs' config_source of a value set on the topic itself (not a broker default).
_TOPIC_OVERRIDE = 1


class TopicPolicyError(ValueError):
    """The topic settings would make topics that lose data or keep it too long."""


@dataclass(frozen=True)
class TopicPolicy:
    replication_factor: int
    single_broker: bool
    retention_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicPolicy:
        policy = cls(
            settings.kafka_topic_replication_factor,
            settings.kafka_single_broker,
            settings.retention_days,
        )
        policy.check()
        return policy

    def check(self) -> None:
        if self.replication_factor < 1:
            raise TopicPolicyError(
                f"KAFKA_TOPIC_REPLICATION_FACTOR must be at least 1 (got {self.replication_factor})"
            )
        if self.replication_factor == 1 and not self.single_broker:
            raise TopicPolicyError(
                "KAFKA_TOPIC_REPLICATION_FACTOR=1 keeps one copy of every event: a lost broker "
                "loses them. Use 3 on a cluster; set KAFKA_SINGLE_BROKER=true only for a "
                "single-broker Kafka (local stack, tests)"
            )
        if self.retention_days < 1:
            raise TopicPolicyError(f"RETENTION_DAYS must be at least 1 (got {self.retention_days})")

    @property
    def min_insync_replicas(self) -> int:
        return min(2, self.replication_factor)

    @property
    def retention_limit_ms(self) -> int:
        return self.retention_days * DAY_MS

    def retention_ms(self, topic: Topic) -> int:
        return min(topic.retention_ms, self.retention_limit_ms)

    def new_topic(self, topic: Topic) -> NewTopic:
        return NewTopic(
            topic.name,
            num_partitions=topic.partitions,
            replication_factor=self.replication_factor,
            topic_configs={
                "retention.ms": str(self.retention_ms(topic)),
                "min.insync.replicas": str(self.min_insync_replicas),
            },
        )


def lowered_configs(
    overrides: dict[str, str], retention_ms: int, limit_ms: int
) -> dict[str, str] | None:
    """A topic's own configs with retention.ms lowered to `limit_ms`, or None when its records
    already go sooner. `retention_ms` is the one in force (the topic's or the broker's; -1 is
    forever). AlterConfigs replaces every topic-level config: the others go back unchanged."""
    if 0 <= retention_ms <= limit_ms:
        return None
    return {**overrides, "retention.ms": str(limit_ms)}


def read_configs(entries: Iterable[Any]) -> tuple[dict[str, str], int]:
    """The configs set on the topic itself and the retention.ms in force, from a
    DescribeConfigs (v1+) resource's entries: (name, value, read_only, source, sensitive, …)."""
    entries = list(entries)
    overrides = {e[0]: e[1] for e in entries if e[3] == _TOPIC_OVERRIDE and e[1] is not None}
    retention = next((int(e[1]) for e in entries if e[0] == "retention.ms" and e[1]), -1)
    return overrides, retention


async def ensure_topics(bootstrap_servers: str, settings: Settings | None = None) -> list[str]:
    """Create the missing topics and lower retentions above RETENTION_DAYS; return the names
    created. `settings` (default: the environment's) give the policy and the connection's
    security."""
    settings = settings or get_settings()
    policy = TopicPolicy.from_settings(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in TOPICS if t.name not in existing]
        if missing:
            response = await admin.create_topics([policy.new_topic(t) for t in missing])
            _raise_errors(
                "create",
                ((e[0], e[1], e[2] if len(e) > 2 else None) for e in response.topic_errors),
            )
        present = [t.name for t in TOPICS if t.name in existing]
        if present:
            await _lower_retention(admin, present, policy.retention_limit_ms)
        return [t.name for t in missing]
    finally:
        await admin.close()


async def _lower_retention(admin: AIOKafkaAdminClient, names: list[str], limit_ms: int) -> None:
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    )
    resources = [r for response in described for r in response.resources]
    _raise_errors("describe", ((r[3], r[0], r[1]) for r in resources))
    changes = {
        name: lowered
        for _, _, _, name, entries in resources
        if (lowered := lowered_configs(*read_configs(entries), limit_ms)) is not None
    }
    if not changes:
        return
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, c) for n, c in changes.items()]
    )
    _raise_errors(
        "alter", ((r[3], r[0], r[1]) for response in responses for r in response.resources)
    )
    for name in changes:
        log.info("topic_retention_lowered", topic=name, retention_ms=limit_ms)


def _raise_errors(action: str, results: Iterable[tuple[str, int, str | None]]) -> None:
    """aiokafka returns the broker's per-topic errors (name, code, message) instead of raising."""
    errors = [
        f"{name}: error {code} {message or ''}".strip() for name, code, message in results if code
    ]
    if errors:
        raise RuntimeError(f"could not {action} topics: {'; '.join(errors)}")


def main() -> None:
    settings = get_settings()
    created = asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, settings))
    print("topics created: " + (", ".join(created) if created else "none (all present)"))
    sys.exit(0)


if __name__ == "__main__":
    main()
