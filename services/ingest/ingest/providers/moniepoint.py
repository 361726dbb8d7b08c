"""Moniepoint: `X-Moniepoint-Signature` = hex HMAC-SHA256 of the raw body."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.events import Customer, new_event

from . import fields as f
from .base import Handshake, HmacAdapter, HmacScheme, Outcome

EVENT_TYPES = {"payment.successful", "payment.failed", "transfer.completed", "transfer.failed"}
HANDSHAKE_EVENT = "webhook.verification"


class Moniepoint(HmacAdapter):
    name = "moniepoint"
    secrets_setting = "moniepoint_webhook_secrets"
    signature = HmacScheme("X-Moniepoint-Signature")

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        event_type = f.text_field(payload, "event", "event")
        if event_type == HANDSHAKE_EVENT:
            # Echoed back as it came: only a string is (any JSON would be echoed unchecked).
            return Handshake({"challenge": f.required_text(payload, "challenge", "challenge")})
        if event_type not in EVENT_TYPES:
            raise f.PayloadError(
                f"unsupported event {event_type!r}; expected one of {sorted(EVENT_TYPES)}"
            )
        data = f.object_field(payload, "data", "data")
        customer = f.object_field(data, "customer", "data.customer")
        reason = f.text_field(data, "reason", "data.reason")
        if event_type.endswith("failed") and not reason:
            raise f.PayloadError("missing field data.reason on a failed event")
        event = f.event_data(
            self.name,
            f.reference_field(data, "transactionReference", "data.transactionReference"),
            f.to_decimal(f.require(data, "amount"), "data.amount"),
            Customer(
                account_number=f.reference_field(
                    customer, "accountNumber", "data.customer.accountNumber"
                ),
                email=f.text_field(customer, "email", "data.customer.email"),
                name=f.text_field(customer, "name", "data.customer.name"),
            ),
            currency=f.currency_field(data, "data.currency"),
            reason=reason,
            description=f.text_field(data, "description", "data.description"),
            channel=f.text_field(data, "channel", "data.channel"),
            occurred_at=_timestamp(data),
            next_due_date=f.text_field(data, "nextDueDate", "data.nextDueDate"),
        )
        return [new_event(event, event_type)]


def _timestamp(data: Mapping[str, Any]) -> datetime | None:
    """`data.timestamp` as an aware time. Moniepoint's contract gives ISO 8601, so an
    unreadable one is refused (422) rather than replaced by the time of receipt."""
    raw = data.get("timestamp")
    parsed = f.to_datetime(raw)
    if parsed is None and raw not in (None, ""):
        raise f.PayloadError("data.timestamp is not an ISO 8601 date-time")
    return parsed
