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
from typing import Any

import orjson

from bridge.events import new_event
from bridge.signing import SignatureError, check_age, js_stringify, verify_hmac

from . import fields as f
from .base import Ignored, JsonAdapter, Outcome, WebhookRequest, open_envelope

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


class WasaaPay(JsonAdapter):
    name = "wasaapay"
    secrets_setting = "wasaapay_webhook_secrets"

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
        signed_at = f.to_datetime(payload.get("timestamp"))
        if signed_at is None:
            raise SignatureError("the signed timestamp field is missing or not a date-time")
        check_age(signed_at.timestamp(), request.now, TOLERANCE_SECONDS)

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        envelope = open_envelope(payload, EVENT_MAP, "WasaaPay")
        if isinstance(envelope, Ignored):
            return envelope
        event_type, canonical, data = envelope.event, envelope.canonical, envelope.data
        customer = f.contact_customer(
            f.object_field(data, "customer", "data.customer"),
            "data.customer",
            phone="phone",
            email="email",
            name="name",
            missing="data.customer has neither an international phone nor an email",
        )
        kind = event_type.partition(".")[0]
        event = f.event_data(
            self.name,
            f.reference_field(data, "transactionId", "data.transactionId"),
            f.to_decimal(f.require(data, "amount"), "data.amount"),
            customer,
            currency=f.currency_field(data, "data.currency", required=True),
            reason=f.failure_reason(
                data,
                "data",
                "reason",
                default=f"{kind} failed",
                failed=canonical.endswith(".failed"),
            ),
            description=f.text_field(data, "biller", "data.biller")
            or f.text_field(data, "description", "data.description"),
            channel=kind,
            occurred_at=f.to_datetime(payload.get("timestamp")),
        )
        return [new_event(event, canonical)]
