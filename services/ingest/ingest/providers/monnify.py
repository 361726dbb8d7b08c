"""Monnify: `monnify-signature` = hex HMAC-SHA512 of the raw body, keyed with the client secret.

Envelope `{"eventType": "...", "eventData": {...}}`. Collections carry the payer's email;
disbursements name the destination account (the customer to notify); refunds name the
original transaction and no customer, so they are only turned into events when the payload
does carry one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.events import Customer, EventData, new_event

from . import fields as f
from .base import HmacAdapter, HmacScheme, Ignored, Outcome, open_envelope

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


class Monnify(HmacAdapter):
    name = "monnify"
    secrets_setting = "monnify_client_secrets"
    signature = HmacScheme("monnify-signature", algorithm="sha512")

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        envelope = open_envelope(
            payload, EVENT_MAP, "Monnify", event_key="eventType", data_key="eventData"
        )
        if isinstance(envelope, Ignored):
            return envelope
        event_type, canonical, data = envelope.event, envelope.canonical, envelope.data
        if event_type == "SUCCESSFUL_TRANSACTION":
            status = f.text_field(data, "paymentStatus", "eventData.paymentStatus") or "PAID"
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
        customer = f.object_field(data, "customer", "eventData.customer")
        return f.event_data(
            self.name,
            _reference(data),
            f.to_decimal(f.require(data, "amountPaid"), "eventData.amountPaid"),
            f.email_customer(customer, "eventData.customer"),
            currency=f.currency_field(data, "eventData.currency"),
            description=f.text_field(data, "paymentDescription", "eventData.paymentDescription"),
            channel=f.text_field(data, "paymentMethod", "eventData.paymentMethod"),
            occurred_at=f.to_datetime(data.get("paidOn"), default_tz=f.WAT),
        )

    def _disbursement(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        reason = f.failure_reason(
            data,
            "eventData",
            "transactionDescription",
            default="disbursement failed",
            failed=failed,
        )
        return f.event_data(
            self.name,
            _reference(data),
            f.to_decimal(f.require(data, "amount"), "eventData.amount"),
            Customer(
                account_number=f.reference_field(
                    data, "destinationAccountNumber", "eventData.destinationAccountNumber"
                ),
                name=f.text_field(
                    data, "destinationAccountName", "eventData.destinationAccountName"
                ),
            ),
            currency=f.currency_field(data, "eventData.currency"),
            reason=reason,
            description=f.text_field(data, "narration", "eventData.narration"),
            channel="DISBURSEMENT",
            occurred_at=_completed(data),
        )

    def _refund(
        self, data: Mapping[str, Any], customer: Mapping[str, Any], *, failed: bool
    ) -> EventData:
        original = _reference(data)
        refund = data.get("refundReference")
        return f.event_data(
            self.name,
            # One transaction may be refunded in parts: each refund is its own event.
            (
                f.reference_field(data, "refundReference", "eventData.refundReference")
                if refund
                else original
            ),
            f.to_decimal(f.require(data, "refundAmount"), "eventData.refundAmount"),
            f.email_customer(customer, "eventData.customer"),
            currency=f.currency_field(data, "eventData.currency"),
            reason="refund failed" if failed else None,
            description=f"refund of {original}",
            occurred_at=_completed(data),
        )


def _reference(data: Mapping[str, Any]) -> str:
    return f.reference_field(data, "transactionReference", "eventData.transactionReference")


def _completed(data: Mapping[str, Any]) -> datetime | None:
    return f.to_datetime(data.get("completedOn") or data.get("createdOn"), default_tz=f.WAT)
