"""Create the bridge's topics idempotently: `python -m bridge.topics`."""

from __future__ import annotations

import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from .config import get_settings
from .events import TOPICS


async def ensure_topics(bootstrap_servers: str, replication_factor: int = 1) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in TOPICS if t.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        t.name,
                        num_partitions=t.partitions,
                        replication_factor=replication_factor,
                        topic_configs={"retention.ms": str(t.retention_ms)},
                    )
                    for t in missing
                ]
            )
        return [t.name for t in missing]
    finally:
        await admin.close()


def main() -> None:
    settings = get_settings()
    created = asyncio.run(
        ensure_topics(settings.kafka_bootstrap_servers, settings.kafka_topic_replication_factor)
    )
    print("topics created: " + (", ".join(created) if created else "none (all present)"))
    sys.exit(0)


if __name__ == "__main__":
    main()
