"""Customers' replies and conversation states onto `bridge.replies.v1` and
`bridge.conversations.v1` (the contract: bridge.inbound, docs/events.md).

`records` is pure: a parsed receipt → the outbox rows to write. The receipts service writes
them in the transaction that stores the webhook and its audit row (app._store), so 200 means
stored *and* queued, and a redelivered webhook (the same event id) writes nothing more; its
outbox relay publishes them.

No clear number: the sender is sealed (`from`) and hashed (`from_index`, the Kafka key), and
a run of digits a customer typed into the text is masked to its last four.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bridge.events import CONVERSATIONS_TOPIC, REPLIES_TOPIC
from bridge.inbound import ConversationData, ConversationEvent, ReplyData, ReplyEvent
from bridge.phones import to_siteti
from bridge.protect import DataKeys, last_four

from .webhooks import Inbound, Receipt


@dataclass(frozen=True)
class OutboxRecord:
    topic: str
    key: str
    payload: dict[str, Any]


# A phone number as people type one: 8 or more digits (the shortest international numbers),
# maybe after a +, with spaces, dots, dashes or brackets between them. Separators and digits
# are disjoint, so matching stays linear.
_NUMBER = re.compile(r"\+?\d(?:[ .\-()]*\d){7,}")


def mask_numbers(text: str) -> str:
    """`text` with every number in it masked to its last four digits (`•••4567`)."""
    return _NUMBER.sub(lambda match: last_four(match.group()) or "", text)


def siteti_number(sender: str | None, region: str) -> str | None:
    """The sender's number as the directory indexes it (Siteti's form), else as it came."""
    if sender is None:
        return None
    return to_siteti(sender, region, trusted=True) or sender


def partition_key(keys: DataKeys, from_index: str | None, inbound: Inbound, event_id: str) -> str:
    """The Kafka key: one customer's records share it (and a partition, and their order).
    Without a number, the keyed hash of the BSUID, else of the contact, else of the event."""
    if from_index:
        return from_index
    if inbound.bsuid:
        return keys.index(inbound.bsuid, "bsuid")
    if inbound.contact_id:
        return keys.index(inbound.contact_id, "contact")
    return keys.index(event_id, "event")


def records(receipt: Receipt, keys: DataKeys, region: str) -> list[OutboxRecord]:
    """The outbox rows a receipt adds: one for a reply or a conversation state, else none."""
    inbound = receipt.inbound
    if inbound is None:
        return []
    number = siteti_number(inbound.sender, region)
    from_index = keys.phone_index(number) if number else None
    key = partition_key(keys, from_index, inbound, receipt.event_id)
    envelope: dict[str, Any] = {
        "id": receipt.event_id,
        "subject": receipt.reference,
        "time": receipt.occurred_at,
    }
    if receipt.type == "message.received":
        reply = ReplyData(
            message_id=inbound.message_id,
            contact_id=inbound.contact_id,
            from_index=from_index,
            from_=keys.seal(number, "phone") if number else None,
            bsuid=inbound.bsuid,
            text=mask_numbers(inbound.text) if inbound.text else None,
            button_payload=inbound.button_payload,
            context_message_id=inbound.context_message_id,
            reference=inbound.reference,
            received_at=receipt.occurred_at,
        )
        event = ReplyEvent(**envelope, data=reply).model_dump(mode="json")
        return [OutboxRecord(REPLIES_TOPIC.name, key, event)]
    state = ConversationData(
        contact_id=inbound.contact_id,
        state=inbound.state,
        window_expires_at=inbound.window_expires_at,
        bsuid=inbound.bsuid,
        from_index=from_index,
        changed_at=receipt.occurred_at,
    )
    event = ConversationEvent(**envelope, data=state).model_dump(mode="json")
    return [OutboxRecord(CONVERSATIONS_TOPIC.name, key, event)]


async def queue(conn: asyncpg.Connection, rows: Sequence[OutboxRecord]) -> None:
    """Add `rows` to the outbox, in the caller's transaction."""
    if rows:
        await conn.executemany(
            "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
            [(row.topic, row.key, row.payload) for row in rows],
        )
