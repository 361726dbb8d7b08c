"""Open Market: `opm-signature` = hex HMAC-SHA256 with the merchant's private key over
`JSON.stringify(payload)`. A bad signature is answered 400 (their convention).

The raw bytes are tried first (a sender that posts exactly what it signed), then the
JavaScript re-serialisation of the parsed body. Only completed payments are sent; the
`transaction_id` is the dedupe key and the canonical transaction reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bridge.events import new_event
from bridge.signing import SignatureError, js_stringify, matches_any

from . import fields as f
from .base import HmacScheme, Ignored, JsonAdapter, Outcome, WebhookRequest

SIGNATURE = HmacScheme("opm-signature")
HEADER = SIGNATURE.header


class OpenMarket(JsonAdapter):
    name = "openmarket"
    secrets_setting = "openmarket_private_keys"
    bad_signature_status = 400

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        secrets = list(secrets)
        signature = request.headers.get(HEADER)
        if signature and secrets and matches_any([signature], secrets, request.body):
            return
        if not signature or not secrets:
            SIGNATURE.verify(request, secrets)  # names what is missing
        try:
            parsed = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise SignatureError(f"{HEADER} does not match the body (not JSON)") from exc
        SIGNATURE.verify(request, secrets, message=js_stringify(parsed).encode())

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        status = payload.get("status")
        if status != "completed":
            return Ignored(f"Open Market transaction with status {status!r}")
        kind = payload.get("transaction_type") or "payment"
        if kind != "payment":
            return Ignored(f"Open Market transaction_type {kind!r}")
        meta = payload.get("meta_data")
        order_id = (
            f.reference_field(meta, "order_id", "meta_data.order_id")
            if isinstance(meta, Mapping) and meta.get("order_id")
            else None
        )
        event = f.event_data(
            self.name,
            f.reference_field(payload, "transaction_id", "transaction_id"),
            f.to_decimal(f.require(payload, "amount"), "amount"),
            f.contact_customer(
                payload,
                "",
                phone="buyer_number",
                email="buyer_email",
                name="buyer_name",
                missing="neither buyer_number (E.164) nor buyer_email is given",
            ),
            currency=f.currency_field(payload, "currency", required=True),
            description=f.text_field(payload, "reference", "reference") or order_id,
            occurred_at=f.to_datetime(payload.get("updated_at") or payload.get("created_at")),
        )
        return [new_event(event, "payment.successful")]
