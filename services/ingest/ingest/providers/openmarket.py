"""Open Market: `opm-signature` = hex HMAC-SHA256 with the merchant's private key over
`JSON.stringify(payload)`. A bad signature is answered 400 (their convention).

The raw bytes are tried first (a sender that posts exactly what it signed), then the
JavaScript re-serialisation of the parsed body. Only completed payments are sent; the
`transaction_id` is the dedupe key and the canonical transaction reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from bridge.events import Customer, EventData, new_event
from bridge.signing import SignatureError, js_stringify, matches_any, verify_hmac

from .base import (
    Ignored,
    Outcome,
    PayloadError,
    WebhookRequest,
    currency_field,
    json_object,
    payload_fields,
    phone_digits,
    reference_field,
    require,
    text_field,
    to_datetime,
    to_decimal,
)

HEADER = "opm-signature"


class OpenMarket:
    name: ClassVar[str] = "openmarket"
    secrets_setting: ClassVar[str] = "openmarket_private_keys"
    bad_signature_status: ClassVar[int] = 400

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        secrets = list(secrets)
        signature = request.headers.get(HEADER)
        if signature and secrets and matches_any([signature], secrets, request.body):
            return
        if not signature or not secrets:
            # verify_hmac names what is missing.
            verify_hmac(request.body, signature, secrets, header=HEADER)
        try:
            parsed = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise SignatureError(f"{HEADER} does not match the body (not JSON)") from exc
        verify_hmac(js_stringify(parsed).encode(), signature, secrets, header=HEADER)

    def parse(self, request: WebhookRequest) -> Outcome:
        payload = json_object(request)
        with payload_fields():
            return self._parse(payload)

    def _parse(self, payload: Mapping[str, Any]) -> Outcome:
        status = payload.get("status")
        if status != "completed":
            return Ignored(f"Open Market transaction with status {status!r}")
        kind = payload.get("transaction_type") or "payment"
        if kind != "payment":
            return Ignored(f"Open Market transaction_type {kind!r}")
        phone = phone_digits(text_field(payload, "buyer_number", "buyer_number"))
        email = text_field(payload, "buyer_email", "buyer_email")
        if not phone and not email:
            raise PayloadError("neither buyer_number (E.164) nor buyer_email is given")
        meta = payload.get("meta_data")
        order_id = (
            reference_field(meta, "order_id", "meta_data.order_id")
            if isinstance(meta, Mapping) and meta.get("order_id")
            else None
        )
        event = EventData(
            provider=self.name,
            transaction_reference=reference_field(payload, "transaction_id", "transaction_id"),
            amount=to_decimal(require(payload, "amount"), "amount"),
            currency=currency_field(payload, "currency", default=None),
            customer=Customer(
                phone=phone, email=email, name=text_field(payload, "buyer_name", "buyer_name")
            ),
            description=text_field(payload, "reference", "reference") or order_id,
            occurred_at=to_datetime(payload.get("updated_at") or payload.get("created_at")),
        )
        return [new_event(event, "payment.successful")]
