"""Moniepoint: `X-Moniepoint-Signature` = hex HMAC-SHA256 of the raw body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from bridge.events import Customer, EventData, new_event
from bridge.signing import verify_hmac

from .base import Handshake, Outcome, PayloadError, WebhookRequest, require, to_decimal

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
        payload = request.json()
        if not isinstance(payload, Mapping):
            raise PayloadError("body must be a JSON object")
        event_type = payload.get("event")
        if event_type == HANDSHAKE_EVENT:
            return Handshake({"challenge": require(payload, "challenge")})
        if event_type not in EVENT_TYPES:
            raise PayloadError(
                f"unsupported event {event_type!r}; expected one of {sorted(EVENT_TYPES)}"
            )
        data = require(payload, "data")
        customer = require(data, "customer")
        if event_type.endswith("failed") and not data.get("reason"):
            raise PayloadError("missing field data.reason on a failed event")
        event = EventData(
            provider=self.name,
            transaction_reference=str(require(data, "transactionReference")),
            amount=to_decimal(require(data, "amount"), "data.amount"),
            currency=str(data.get("currency") or "NGN").upper(),
            customer=Customer(
                account_number=str(require(customer, "accountNumber")),
                email=customer.get("email"),
                name=customer.get("name"),
            ),
            reason=data.get("reason"),
            description=data.get("description"),
            channel=data.get("channel"),
            occurred_at=data.get("timestamp"),
            next_due_date=data.get("nextDueDate"),
        )
        return [new_event(event, event_type)]
