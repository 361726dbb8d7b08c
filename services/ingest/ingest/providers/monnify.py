"""Monnify: `monnify-signature` = hex HMAC-SHA512 of the raw body, keyed with the client secret.

Envelope `{"eventType": "...", "eventData": {...}}`. Collections carry the payer's email;
disbursements name the destination account (the customer to notify); refunds name the
original transaction and no customer, so they are only turned into events when the payload
does carry one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bridge.events import Customer, EventData, new_event
from bridge.signing import verify_hmac

from .base import (
    WAT,
    Ignored,
    Outcome,
    WebhookRequest,
    currency_field,
    json_object,
    object_field,
    open_envelope,
    payload_fields,
    reference_field,
    require,
    required_text,
    text_field,
    to_datetime,
    to_decimal,
)

#: eventType -> canonical type
EVENT_MAP = {
    "SUCCESSFUL_TRANSACTION": "payment.successful",
    "SUCCESSFUL_DISBURSEMENT": "transfer.completed",
    "FAILED_DISBURSEMENT": "transfer.failed",
    "REVERSED_DISBURSEMENT": "transfer.reversed",
    "SUCCESSFUL_REFUND": "refund.processed",
    "FAILED_REFUND": "refund.failed",
}
#: paymentStatus values of a SUCCESSFUL_TRANSACTION that mean money arrived
PAID_STATUSES = {"PAID", "OVERPAID", "PARTIALLY_PAID"}


class Monnify:
    name: ClassVar[str] = "monnify"
    secrets_setting: ClassVar[str] = "monnify_client_secrets"
    bad_signature_status: ClassVar[int] = 401

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        verify_hmac(
            request.body,
            request.headers.get("monnify-signature"),
            secrets,
            algorithm="sha512",
            header="monnify-signature",
        )

    def parse(self, request: WebhookRequest) -> Outcome:
        payload = json_object(request)
        with payload_fields():
            return self._parse(payload)

    def _parse(self, payload: Mapping[str, Any]) -> Outcome:
        envelope = open_envelope(
            payload, EVENT_MAP, "Monnify", event_key="eventType", data_key="eventData"
        )
        if isinstance(envelope, Ignored):
            return envelope
        event_type, canonical, data = envelope.event, envelope.canonical, envelope.data
        if event_type == "SUCCESSFUL_TRANSACTION":
            status = text_field(data, "paymentStatus", "eventData.paymentStatus") or "PAID"
            status = status.upper()
            if status not in PAID_STATUSES:
                return Ignored(f"Monnify transaction with paymentStatus {status!r}")
            event = self._collection(data)
        elif event_type.endswith("_DISBURSEMENT"):
            event = self._disbursement(data, failed=event_type == "FAILED_DISBURSEMENT")
        else:
            customer = data.get("customer")
            if not isinstance(customer, Mapping) or not customer.get("email"):
                return Ignored(f"Monnify {event_type} names no customer to notify")
            event = self._refund(data, customer, failed=event_type == "FAILED_REFUND")
        return [new_event(event, canonical)]

    def _collection(self, data: Mapping[str, Any]) -> EventData:
        customer = object_field(data, "customer", "eventData.customer")
        return EventData(
            provider=self.name,
            transaction_reference=_reference(data),
            amount=to_decimal(require(data, "amountPaid"), "eventData.amountPaid"),
            currency=currency_field(data, "eventData.currency"),
            customer=Customer(
                email=required_text(customer, "email", "eventData.customer.email"),
                name=text_field(customer, "name", "eventData.customer.name"),
            ),
            description=text_field(data, "paymentDescription", "eventData.paymentDescription"),
            channel=text_field(data, "paymentMethod", "eventData.paymentMethod"),
            occurred_at=to_datetime(data.get("paidOn"), default_tz=WAT),
        )

    def _disbursement(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        reason = None
        if failed:
            reason = (
                text_field(data, "transactionDescription", "eventData.transactionDescription")
                or "disbursement failed"
            )
        return EventData(
            provider=self.name,
            transaction_reference=_reference(data),
            amount=to_decimal(require(data, "amount"), "eventData.amount"),
            currency=currency_field(data, "eventData.currency"),
            customer=Customer(
                account_number=reference_field(
                    data, "destinationAccountNumber", "eventData.destinationAccountNumber"
                ),
                name=text_field(data, "destinationAccountName", "eventData.destinationAccountName"),
            ),
            reason=reason,
            description=text_field(data, "narration", "eventData.narration"),
            channel="DISBURSEMENT",
            occurred_at=to_datetime(
                data.get("completedOn") or data.get("createdOn"), default_tz=WAT
            ),
        )

    def _refund(
        self, data: Mapping[str, Any], customer: Mapping[str, Any], *, failed: bool
    ) -> EventData:
        original = _reference(data)
        refund = data.get("refundReference")
        return EventData(
            provider=self.name,
            # One transaction may be refunded in parts: each refund is its own event.
            transaction_reference=(
                reference_field(data, "refundReference", "eventData.refundReference")
                if refund
                else original
            ),
            amount=to_decimal(require(data, "refundAmount"), "eventData.refundAmount"),
            currency=currency_field(data, "eventData.currency"),
            customer=Customer(
                email=required_text(customer, "email", "eventData.customer.email"),
                name=text_field(customer, "name", "eventData.customer.name"),
            ),
            reason="refund failed" if failed else None,
            description=f"refund of {original}",
            occurred_at=to_datetime(
                data.get("completedOn") or data.get("createdOn"), default_tz=WAT
            ),
        )


def _reference(data: Mapping[str, Any]) -> str:
    return reference_field(data, "transactionReference", "eventData.transactionReference")
