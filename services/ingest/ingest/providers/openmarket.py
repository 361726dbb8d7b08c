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
    json_object,
    payload_fields,
    phone_digits,
    require,
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
        phone = phone_digits(payload.get("buyer_number"))
        email = payload.get("buyer_email") or None
        if not phone and not email:
            raise PayloadError("neither buyer_number (E.164) nor buyer_email is given")
        meta = payload.get("meta_data")
        order_id = meta.get("order_id") if isinstance(meta, Mapping) else None
        event = EventData(
            provider=self.name,
            transaction_reference=str(require(payload, "transaction_id")),
            amount=to_decimal(require(payload, "amount"), "amount"),
            currency=str(require(payload, "currency")).upper(),
            customer=Customer(phone=phone, email=email, name=payload.get("buyer_name")),
            description=str(payload.get("reference") or order_id or "") or None,
            occurred_at=to_datetime(payload.get("updated_at") or payload.get("created_at")),
        )
        return [new_event(event, "payment.successful")]
