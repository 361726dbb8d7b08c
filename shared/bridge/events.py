"""The canonical event: CloudEvents 1.0 structured JSON, one shape for every source.

Consumers read `type` (e.g. `payment.successful`), `subject` (the Siteti reference
`<provider>:<transaction reference>`) and `data` (`EventData`). On the topic, a number the
source gave is sealed and the Kafka key is a keyed hash of the customer (bridge.protect), so
one customer's events stay on one partition, in order, and no clear number leaves the edge.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_serializer,
    model_validator,
)

from .tracing import TRACEPARENT_PATTERN

SCHEMA_VERSION = "1"
Priority = Literal["transactional", "bulk"]

# Types of the sources without webhooks (ingest.sources): polled database rows and file
# drops. Every column of such a row that is not an EventData field becomes a details key.
SOURCE_EVENT_TYPES = frozenset(
    {
        "order.completed",
        "order.shipped",
        "booking.confirmed",
        "loan.approved",
        "rent.overdue",
        "rent.reminder",
    }
)

# Canonical event types. A successful payment from any provider is `payment.successful`.
# Provider event names are mapped onto these (docs: the provider mapping table); keep the set
# small and provider-neutral.
EVENT_TYPES = (
    frozenset(
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
        }
    )
    | SOURCE_EVENT_TYPES
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
# Customers' replies and conversation states (bridge.inbound), keyed by the customer's keyed
# hash. 7 days, like the events: they hold a customer's own words.
REPLIES_TOPIC = Topic("bridge.replies.v1", 6, 7 * 24 * 3600 * 1000, "customers' WhatsApp replies")
CONVERSATIONS_TOPIC = Topic(
    "bridge.conversations.v1", 3, 7 * 24 * 3600 * 1000, "WhatsApp conversation states"
)
TOPICS = (EVENTS_TOPIC, DEAD_LETTER_TOPIC, AUDIT_TOPIC, REPLIES_TOPIC, CONVERSATIONS_TOPIC)


# --- Limits: what every consumer can take -------------------------------------------------
# The model refuses anything outside these, so no producer (a webhook, the poller, the file
# drop, a script) can put an event on the topic that the dispatcher, PostgreSQL (text and
# jsonb refuse NUL; timestamps must convert to UTC) or Siteti would choke on. Ingest answers
# such input 422; the sources report the row. docs/events.md lists them for consumers.

#: Event times before this are legacy "null dates" (0001-01-01) or epoch zero, not business
#: events (and year-1 times with an offset break PostgreSQL's conversion to UTC).
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
#: How far ahead of our clock an event time may be: clock skew or a wrong zone, not more.
MAX_FUTURE_SKEW = timedelta(days=1)
#: Amounts are below this (exclusive), in major units: a trillion is a typo or an attack, and
#: 12 integer digits keep the written amount short.
MAX_AMOUNT = Decimal(10) ** 12
#: Currencies use 0-3 decimal places; 8 leaves room for a provider that sends more.
MAX_AMOUNT_DECIMALS = 8
#: The source's name (`moniepoint`, `dbpoll`, a configured poller name).
MAX_PROVIDER_LENGTH = 32
#: The transaction reference: Siteti echoes `<provider>:<reference>`, the audit log keys on it.
MAX_REFERENCE_LENGTH = 128
#: Customer look-up keys and other identifiers (an email address is at most 254 characters).
MAX_IDENTIFIER_LENGTH = 254
#: Names and channels: shown in a WhatsApp message.
MAX_NAME_LENGTH = 200
#: Free text (reason, description, details values): a template variable, not a document.
MAX_TEXT_LENGTH = 1000
#: `details`: how many entries, and how long a key (a legacy file's column name).
MAX_DETAILS = 64
MAX_DETAIL_KEY_LENGTH = 64
#: CloudEvents attributes (id, source, subject, dataschema).
MAX_ATTRIBUTE_LENGTH = 256

_CONTROLS = r"\u0000-\u001f\u007f-\u009f"  # C0, DEL and C1
_CONTROLS_BUT_LINES = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f"  # keeps \t \n \r
#: Identifiers carry no control character at all: they become keys, references, SQL text.
IDENTIFIER_PATTERN = f"^[^{_CONTROLS}]*$"
#: Free text may keep tab and line breaks (a multi-line narration), no other control.
TEXT_PATTERN = f"^[^{_CONTROLS_BUT_LINES}]*$"
CURRENCY_PATTERN = "^[A-Z]{3}$"
SUBJECT_PATTERN = f"^[^:{_CONTROLS}]+:[^{_CONTROLS}]+$"
#: `data.amount` as written on the topic (`format(amount, "f")`).
AMOUNT_PATTERN = rf"^[0-9]{{1,{len(str(MAX_AMOUNT)) - 1}}}(\.[0-9]{{1,{MAX_AMOUNT_DECIMALS}}})?$"

_PATTERN_MEANINGS = {
    IDENTIFIER_PATTERN: "must not contain control characters",
    TEXT_PATTERN: "must not contain control characters other than tab and line breaks",
    CURRENCY_PATTERN: "must be a three-letter ISO 4217 code in capitals",
    SUBJECT_PATTERN: "must be <provider>:<reference> without control characters",
}


def _text(max_length: int, pattern: str = TEXT_PATTERN, min_length: int = 0) -> StringConstraints:
    return StringConstraints(min_length=min_length or None, max_length=max_length, pattern=pattern)


Identifier = Annotated[str, _text(MAX_IDENTIFIER_LENGTH, IDENTIFIER_PATTERN)]
ShortText = Annotated[str, _text(MAX_NAME_LENGTH)]
Text = Annotated[str, _text(MAX_TEXT_LENGTH)]
Attribute = Annotated[str, _text(MAX_ATTRIBUTE_LENGTH, IDENTIFIER_PATTERN, 1)]


def amount_problem(value: Decimal) -> str | None:
    """Why `value` cannot be an event's amount, or None when it can."""
    if not value.is_finite():
        return "is not a finite number"
    if value < 0:
        return "must not be negative"
    if value >= MAX_AMOUNT:
        return f"must be below {MAX_AMOUNT:,}"
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_AMOUNT_DECIMALS:
        return f"has more than {MAX_AMOUNT_DECIMALS} decimal places"
    return None


def _checked_amount(value: Decimal) -> Decimal:
    problem = amount_problem(value)
    if problem:
        raise ValueError(problem)
    # -0 would be written "-0", which no consumer expects of an amount.
    return value.copy_abs() if value.is_zero() else value


def _event_time(value: datetime) -> datetime:
    if value < EARLIEST_EVENT_TIME:
        raise ValueError(f"is before {EARLIEST_EVENT_TIME:%Y-%m-%d}: not a real event time")
    if value > datetime.now(UTC) + MAX_FUTURE_SKEW:
        raise ValueError(f"is more than {MAX_FUTURE_SKEW} ahead of our clock")
    return value


EventTime = Annotated[AwareDatetime, AfterValidator(_event_time)]


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")


def _location(part: str | int) -> str:
    # A `details` key is part of the location: name it only when it is plain.
    return str(part) if isinstance(part, int) or _PLAIN_KEY.fullmatch(part) else "<key>"


def describe(exc: ValidationError) -> str:
    """A model refusal in one line a person can act on: `field: why; field: why`. Never
    quotes the refused value (it may be hostile, or a phone number)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(_location(part) for part in error["loc"]) or "event"
        message = error["msg"]
        pattern = (error.get("ctx") or {}).get("pattern")
        if error["type"] == "string_pattern_mismatch" and pattern in _PATTERN_MEANINGS:
            message = _PATTERN_MEANINGS[pattern]
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


class Customer(BaseModel):
    """Who to notify. At least one look-up key is set; `phone` when the source gives one."""

    model_config = ConfigDict(extra="forbid")

    account_number: Identifier | None = None
    email: Identifier | None = None
    phone: Identifier | None = None
    name: ShortText | None = None

    @model_validator(mode="after")
    def _has_a_key(self) -> Customer:
        if not (self.account_number or self.email or self.phone):
            raise ValueError("needs one of account_number, email, phone")
        return self

    @property
    def key(self) -> str:
        """The most stable identifier the source gave (in clear: never a Kafka key as such)."""
        if self.account_number:
            return f"acct:{self.account_number}"
        if self.email:
            return f"email:{self.email.lower()}"
        if self.phone:
            return f"phone:{self.phone}"
        return "unknown"


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Annotated[str, _text(MAX_PROVIDER_LENGTH, IDENTIFIER_PATTERN, 1)]
    transaction_reference: Annotated[str, _text(MAX_REFERENCE_LENGTH, IDENTIFIER_PATTERN, 1)]
    amount: Annotated[Decimal, AfterValidator(_checked_amount)]
    currency: Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)] = "NGN"
    customer: Customer
    reason: Text | None = None
    description: Text | None = None
    channel: ShortText | None = None
    occurred_at: EventTime | None = None
    next_due_date: Identifier | None = None
    # Source-specific facts a template may use (biller, order_id, property, due_date…).
    details: Annotated[
        dict[Annotated[str, _text(MAX_DETAIL_KEY_LENGTH, IDENTIFIER_PATTERN, 1)], Text],
        Field(max_length=MAX_DETAILS),
    ] = Field(default_factory=dict)

    @field_serializer("amount")
    def _amount(self, value: Decimal) -> str:
        # A string keeps every kobo: floats lose them.
        return format(value, "f")


class CanonicalEvent(BaseModel):
    # Envelope attributes it does not know are dropped, not refused: CloudEvents consumers
    # ignore unknown extensions, so a newer producer never dead-letters in an older dispatcher.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    specversion: Literal["1.0"] = "1.0"
    id: Attribute
    source: Attribute
    type: Attribute
    subject: Annotated[str, _text(MAX_ATTRIBUTE_LENGTH, SUBJECT_PATTERN)]
    time: EventTime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: Attribute
    dataversion: Attribute = SCHEMA_VERSION
    # CloudEvents extension: confirmations go before bulk work (reminders, polled rows)
    # when both wait for the same Siteti budget.
    priority: Priority = "transactional"
    # CloudEvents distributed-tracing extension: the trace the event travels in (the same
    # value as the Kafka record's `traceparent` header; bridge.correlation).
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_PATTERN)] | None = None
    data: EventData

    @property
    def reference(self) -> str:
        """The Siteti reference and the dedupe identity: `<provider>:<transaction ref>`."""
        return self.subject

    @property
    def dedupe_key(self) -> str:
        # The type is part of it: a failed attempt and its successful retry share a reference.
        return f"{self.subject}:{self.type}"

    def to_json(self) -> bytes:
        # pydantic-core writes the JSON itself: the same bytes as orjson over `model_dump`,
        # without the intermediate dicts (tests/unit/test_event_json.py compares them).
        return self.__pydantic_serializer__.to_json(self)

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
