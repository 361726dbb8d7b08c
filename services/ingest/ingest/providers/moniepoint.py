"""Moniepoint: `X-Moniepoint-Signature` = hex HMAC-SHA256 of the raw body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from bridge.events import Customer, EventData, new_event
from bridge.signing import verify_hmac

from .base import (
    Handshake,
    Outcome,
    PayloadError,
    WebhookRequest,
    currency_field,
    json_object,
    object_field,
    payload_fields,
    reference_field,
    require,
    required_text,
    text_field,
    to_datetime,
    to_decimal,
)

EVENT_TYPES = {"payment.successful", "payment.failed", "transfer.completed", "transfer.failed"}
HANDSHAKE_EVENT = "webhook.verification"


class Moniepoint:
    name: ClassVar[str] = "moniepoint"
    secrets_setting: ClassVar[str] = "moniepoint_webhook_secrets"
    bad_signature_status: ClassVar[int] = 401

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        verify_hmac(
            request.body,
            request.headers.get("x-moniepoint-signature"),
            secrets,
            header="X-Moniepoint-Signature",
        )

    def parse(self, request: WebhookRequest) -> Outcome:
        payload = json_object(request)
        with payload_fields():
            return self._parse(payload)

    def _parse(self, payload: Mapping[str, Any]) -> Outcome:
        event_type = text_field(payload, "event", "event")
        if event_type == HANDSHAKE_EVENT:
            # Echoed back as it came: only a string is (any JSON would be echoed unchecked).
            return Handshake({"challenge": required_text(payload, "challenge", "challenge")})
        if event_type not in EVENT_TYPES:
            raise PayloadError(
                f"unsupported event {event_type!r}; expected one of {sorted(EVENT_TYPES)}"
            )
        data = object_field(payload, "data", "data")
        customer = object_field(data, "customer", "data.customer")
        reason = text_field(data, "reason", "data.reason")
        if event_type.endswith("failed") and not reason:
            raise PayloadError("missing field data.reason on a failed event")
        event = EventData(
            provider=self.name,
            transaction_reference=reference_field(
                data, "transactionReference", "data.transactionReference"
            ),
            amount=to_decimal(require(data, "amount"), "data.amount"),
            currency=currency_field(data, "data.currency"),
            customer=Customer(
                account_number=reference_field(
                    customer, "accountNumber", "data.customer.accountNumber"
                ),
                email=text_field(customer, "email", "data.customer.email"),
                name=text_field(customer, "name", "data.customer.name"),
            ),
            reason=reason,
            description=text_field(data, "description", "data.description"),
            channel=text_field(data, "channel", "data.channel"),
            occurred_at=_timestamp(data),
            next_due_date=text_field(data, "nextDueDate", "data.nextDueDate"),
        )
        return [new_event(event, event_type)]


def _timestamp(data: Mapping[str, Any]) -> datetime | None:
    """`data.timestamp` as an aware time. Moniepoint's contract gives ISO 8601, so an
    unreadable one is refused (422) rather than replaced by the time of receipt."""
    raw = data.get("timestamp")
    parsed = to_datetime(raw)
    if parsed is None and raw not in (None, ""):
        raise PayloadError("data.timestamp is not an ISO 8601 date-time")
    return parsed
