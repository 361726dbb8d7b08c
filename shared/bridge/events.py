"""The canonical event: CloudEvents 1.0 structured JSON, one shape for every source.

Consumers read `type` (e.g. `payment.successful`), `subject` (the Siteti reference
`<provider>:<transaction reference>`) and `data` (`EventData`). The Kafka key is
`data.customer.key`, so one customer's events stay on one partition, in order.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_serializer

SCHEMA_VERSION = "1"
Priority = Literal["transactional", "bulk"]

# Canonical event types. A successful payment from any provider is `payment.successful`.
# Provider event names are mapped onto these (docs: the provider mapping table); keep the set
# small and provider-neutral.
EVENT_TYPES = frozenset(
    {
        "payment.successful",
        "payment.failed",
        "transfer.completed",
        "transfer.failed",
        "transfer.reversed",
        "refund.processed",
        "refund.failed",
        "subscription.created",
        "subscription.renewed",
        "subscription.disabled",
        "deposit.completed",
        "deposit.failed",
        "withdrawal.completed",
        "withdrawal.failed",
        "bill.completed",
        "bill.failed",
        # Sources without webhooks (ingest.sources): polled database rows and file drops.
        "order.completed",
        "order.shipped",
        "booking.confirmed",
        "loan.approved",
        "rent.overdue",
        "rent.reminder",
    }
)


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_ms: int
    purpose: str


# Topic names are part of the public contract (docs/events.md); keep them stable.
EVENTS_TOPIC = Topic("bridge.events.v1", 12, 7 * 24 * 3600 * 1000, "canonical business events")
DEAD_LETTER_TOPIC = Topic("bridge.dead-letter.v1", 3, 30 * 24 * 3600 * 1000, "undeliverable events")
AUDIT_TOPIC = Topic("bridge.audit.v1", 6, 30 * 24 * 3600 * 1000, "message lifecycle records")
TOPICS = (EVENTS_TOPIC, DEAD_LETTER_TOPIC, AUDIT_TOPIC)


class Customer(BaseModel):
    """Who to notify. At least one look-up key is set; `phone` when the source gives one."""

    model_config = ConfigDict(extra="forbid")

    account_number: str | None = None
    email: str | None = None
    phone: str | None = None
    name: str | None = None

    @property
    def key(self) -> str:
        """The partition key: the most stable identifier the source gave."""
        if self.account_number:
            return f"acct:{self.account_number}"
        if self.email:
            return f"email:{self.email.lower()}"
        if self.phone:
            return f"phone:{self.phone}"
        return "unknown"


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    transaction_reference: str
    amount: Decimal
    currency: str = "NGN"
    customer: Customer
    reason: str | None = None
    description: str | None = None
    channel: str | None = None
    occurred_at: datetime | None = None
    next_due_date: str | None = None
    # Source-specific facts a template may use (biller, order_id, property, due_date…).
    details: dict[str, str] = Field(default_factory=dict)

    @field_serializer("amount")
    def _amount(self, value: Decimal) -> str:
        # A string keeps every kobo: floats lose them.
        return format(value, "f")


class CanonicalEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str
    dataversion: str = SCHEMA_VERSION
    # CloudEvents extension: confirmations go before bulk work (reminders, polled rows)
    # when both wait for the same Siteti budget.
    priority: Priority = "transactional"
    data: EventData

    @property
    def reference(self) -> str:
        """The Siteti reference and the dedupe identity: `<provider>:<transaction ref>`."""
        return self.subject

    @property
    def dedupe_key(self) -> str:
        # The type is part of it: a failed attempt and its successful retry share a reference.
        return f"{self.subject}:{self.type}"

    @property
    def partition_key(self) -> bytes:
        return self.data.customer.key.encode()

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> CanonicalEvent:
        return cls.model_validate_json(raw)


def new_event(
    data: EventData,
    event_type: str,
    *,
    received_at: datetime | None = None,
    priority: Priority = "transactional",
) -> CanonicalEvent:
    """Wrap `data` as a CloudEvent. The id is derived from the dedupe identity, so a
    provider's redelivery produces the same id (consumers may dedupe on it)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    subject = f"{data.provider}:{data.transaction_reference}"
    digest = hashlib.sha256(f"{subject}:{event_type}".encode()).digest()[:16]
    return CanonicalEvent(
        id=str(uuid.UUID(bytes=digest, version=5)),
        source=f"/siteti-bridge/ingest/{data.provider}",
        type=event_type,
        subject=subject,
        time=received_at or data.occurred_at or datetime.now(UTC),
        dataschema=f"urn:siteti-bridge:schema:{event_type}:v{SCHEMA_VERSION}",
        data=data,
        priority=priority,
    )


def stable_key(*parts: str) -> str:
    """A short, stable hex key for idempotency and cache keys."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:40]
