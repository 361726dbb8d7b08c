"""WasaaPay: the signature is inside the body, `"signature": "sha256=<hex>"` = HMAC-SHA256 with
the webhook secret over `JSON.stringify(payload without its signature field)`.

The raw bytes cannot be what was signed (they contain the signature), so the payload is
re-serialised like JavaScript (`js_stringify`: compact, key order kept, non-ASCII kept,
`2000.0` written `2000`). Both SANDBOX and PRODUCTION environments are accepted.

The signed `timestamp` must be within 5 minutes of our clock: an older copy of a genuine
webhook is a replay, and is refused like a bad signature (401).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from bridge.events import Customer, EventData, new_event
from bridge.signing import SignatureError, check_age, js_stringify, verify_hmac

from .base import (
    Ignored,
    Outcome,
    PayloadError,
    WebhookRequest,
    currency_field,
    json_object,
    object_field,
    open_envelope,
    payload_fields,
    phone_digits,
    reference_field,
    require,
    text_field,
    to_datetime,
    to_decimal,
)

SIGNATURE_FIELD = "signature"
SIGNATURE_PREFIX = "sha256="
#: how far the signed timestamp may be from our clock, either way
TOLERANCE_SECONDS = 300

#: WasaaPay event -> canonical type (the *.initiated events are ignored)
EVENT_MAP = {
    "deposit.completed": "deposit.completed",
    "deposit.failed": "deposit.failed",
    "withdrawal.completed": "withdrawal.completed",
    "withdrawal.failed": "withdrawal.failed",
    "transfer.completed": "transfer.completed",
    "transfer.failed": "transfer.failed",
    "bill.completed": "bill.completed",
    "bill.failed": "bill.failed",
}


def signed_message(payload: Mapping[str, Any]) -> bytes:
    """What WasaaPay signs: JSON.stringify of the payload without its signature field."""
    unsigned = {key: value for key, value in payload.items() if key != SIGNATURE_FIELD}
    return js_stringify(unsigned).encode()


class WasaaPay:
    name: ClassVar[str] = "wasaapay"
    secrets_setting: ClassVar[str] = "wasaapay_webhook_secrets"
    bad_signature_status: ClassVar[int] = 401

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        try:
            payload = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise SignatureError("body is not JSON, so it carries no signature field") from exc
        if not isinstance(payload, Mapping):
            raise SignatureError("body is not a JSON object, so it carries no signature field")
        signature = payload.get(SIGNATURE_FIELD)
        if signature is not None and not isinstance(signature, str):
            raise SignatureError("the body's signature field is not a string")
        verify_hmac(
            signed_message(payload),
            signature,
            secrets,
            prefix=SIGNATURE_PREFIX,
            header="signature field",
        )
        signed_at = to_datetime(payload.get("timestamp"))
        if signed_at is None:
            raise SignatureError("the signed timestamp field is missing or not a date-time")
        check_age(signed_at.timestamp(), request.now, TOLERANCE_SECONDS)

    def parse(self, request: WebhookRequest) -> Outcome:
        payload = json_object(request)
        with payload_fields():
            return self._parse(payload)

    def _parse(self, payload: Mapping[str, Any]) -> Outcome:
        envelope = open_envelope(payload, EVENT_MAP, "WasaaPay")
        if isinstance(envelope, Ignored):
            return envelope
        event_type, canonical, data = envelope.event, envelope.canonical, envelope.data
        customer = object_field(data, "customer", "data.customer")
        phone = phone_digits(text_field(customer, "phone", "data.customer.phone"))
        email = text_field(customer, "email", "data.customer.email")
        if not phone and not email:
            raise PayloadError("data.customer has neither an international phone nor an email")
        reason = None
        if canonical.endswith(".failed"):
            reason = text_field(data, "reason", "data.reason") or (
                f"{event_type.partition('.')[0]} failed"
            )
        event = EventData(
            provider=self.name,
            transaction_reference=reference_field(data, "transactionId", "data.transactionId"),
            amount=to_decimal(require(data, "amount"), "data.amount"),
            currency=currency_field(data, "data.currency", default=None),
            customer=Customer(
                phone=phone, email=email, name=text_field(customer, "name", "data.customer.name")
            ),
            reason=reason,
            description=text_field(data, "biller", "data.biller")
            or text_field(data, "description", "data.description"),
            channel=event_type.partition(".")[0],
            occurred_at=to_datetime(payload.get("timestamp")),
        )
        return [new_event(event, canonical)]
