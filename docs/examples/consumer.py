"""A new consumer of bridge.events.v1 (or of bridge.replies.v1, bridge.conversations.v1: set
TOPIC): its own group, schema validation, dedupe on `id`, and a commit only after the work is
done. Needs `pip install aiokafka jsonschema`."""

from __future__ import annotations

import asyncio
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"  # or your vendored copy of schemas/
URN = "urn:siteti-bridge:schema:"


@cache
def validator(dataschema: str) -> Draft202012Validator | None:
    """`urn:siteti-bridge:schema:<type>:v1` -> schemas/v1/<type>.json; None: not a known type."""
    event_type, _, version = dataschema.removeprefix(URN).rpartition(":")
    path = SCHEMAS / version / f"{event_type}.json"
    if not dataschema.startswith(URN) or not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def parse(value: bytes) -> dict[str, Any]:
    try:
        event = json.loads(value)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def handle(event: dict[str, Any]) -> None:
    data = event["data"]
    if event["type"] == "bridge.message.received.v1":  # bridge.replies.v1
        answer = data["text"] if data["text"] is not None else data["button_payload"]
        print("reply", event["subject"], data["from_index"], data["context_message_id"], answer)
    elif event["type"] == "bridge.conversation.state.v1":  # bridge.conversations.v1
        print("conversation", data["contact_id"], data["state"], data["window_expires_at"])
    else:  # a canonical event, bridge.events.v1
        print("handled", event["type"], event["subject"], data["amount"], data["currency"])


async def main(
    max_events: int | None = None,
    group_id: str = "loyalty-points",
    topic: str = os.environ.get("TOPIC", "bridge.events.v1"),
    bootstrap_servers: str = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,  # your own group: every event, at your own pace
        enable_auto_commit=False,  # commit only what has been processed
        auto_offset_reset="earliest",  # first start: everything still retained
    )
    seen: set[str] = set()  # in production: a unique key in your own database
    handled: list[dict[str, Any]] = []
    await consumer.start()
    try:
        async for message in consumer:
            event = parse(message.value)
            check = validator(str(event.get("dataschema", "")))
            if check is None or not check.is_valid(event):
                print("skipped", event.get("id"), event.get("type"))  # unknown type or invalid
            elif event["id"] not in seen:  # at-least-once: a redelivery has the same id
                handle(event)
                seen.add(event["id"])
                handled.append(event)
            await consumer.commit()  # after the work: a crash redelivers, never loses
            if max_events is not None and len(handled) >= max_events:
                break
    finally:
        await consumer.stop()
    return handled


if __name__ == "__main__":
    asyncio.run(main())
