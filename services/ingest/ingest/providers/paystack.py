"""Paystack: `x-paystack-signature` = hex HMAC-SHA512 of the raw body, keyed with the secret key.

Envelope `{"event": "...", "data": {...}}`. Amounts are in kobo (minor units) and become
naira with two decimals. The customer look-up key is the email; transfers name the
recipient's bank account instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bridge.events import Customer, EventData, new_event

from . import fields as f
from .base import HmacAdapter, HmacScheme, Ignored, Outcome, open_envelope

#: Paystack event -> canonical type
EVENT_MAP = {
    "charge.success": "payment.successful",
    "invoice.payment_failed": "payment.failed",
    "transfer.success": "transfer.completed",
    "transfer.failed": "transfer.failed",
    "transfer.reversed": "transfer.reversed",
    "refund.processed": "refund.processed",
    "refund.failed": "refund.failed",
    "subscription.create": "subscription.created",
    "subscription.disable": "subscription.disabled",
}


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _currency(*places: tuple[Mapping[str, Any], str]) -> str | None:
    """The first `currency` given in `places` (object, its name), else None (the default)."""
    for mapping, name in places:
        value = f.currency_field(mapping, f"{name}.currency")
        if value:
            return value
    return None


def _date(value: Any) -> str | None:
    """`2026-02-20T07:00:00.000Z` -> `2026-02-20` (a due date is a day)."""
    return value[:10] if isinstance(value, str) and len(value) >= 10 else None


def _amount(data: Mapping[str, Any]) -> Decimal:
    """`data.amount` in kobo as naira."""
    return f.minor_to_decimal(f.require(data, "amount"), "data.amount")


class Paystack(HmacAdapter):
    name = "paystack"
    secrets_setting = "paystack_secret_keys"
    signature = HmacScheme("x-paystack-signature", algorithm="sha512")

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        envelope = open_envelope(payload, EVENT_MAP, "Paystack")
        if isinstance(envelope, Ignored):
            return envelope
        event_type, canonical, data = envelope.event, envelope.canonical, envelope.data
        if event_type == "charge.success":
            status = f.text_field(data, "status", "data.status") or "success"
            if status != "success":
                return Ignored(f"Paystack charge.success with status {status!r}")
            event = self._charge(data)
        elif event_type == "invoice.payment_failed":
            event = self._failed_invoice(data)
        elif event_type.startswith("transfer."):
            event = self._transfer(data, failed=event_type != "transfer.success")
        elif event_type.startswith("refund."):
            event = self._refund(data, failed=event_type == "refund.failed")
        else:
            event = self._subscription(data)
        return [new_event(event, canonical)]

    def _customer(self, data: Mapping[str, Any]) -> Customer:
        customer = f.object_field(data, "customer", "data.customer")
        return Customer(
            email=f.required_text(customer, "email", "data.customer.email"),
            name=f.customer_name(customer.get("first_name"), customer.get("last_name")),
        )

    def _charge(self, data: Mapping[str, Any]) -> EventData:
        return f.event_data(
            self.name,
            f.reference_field(data, "reference", "data.reference"),
            _amount(data),
            self._customer(data),
            currency=_currency((data, "data")),
            description=f.text_field(data, "gateway_response", "data.gateway_response"),
            channel=f.text_field(data, "channel", "data.channel"),
            occurred_at=f.to_datetime(data.get("paid_at") or data.get("created_at")),
        )

    def _failed_invoice(self, data: Mapping[str, Any]) -> EventData:
        """A subscription renewal that could not be charged."""
        transaction = _mapping(data, "transaction")
        subscription = _mapping(data, "subscription")
        plan = _mapping(subscription, "plan")
        reason = f.text_field(
            transaction, "gateway_response", "data.transaction.gateway_response"
        ) or f.failure_reason(
            data, "data", "gateway_response", default="subscription payment failed"
        )
        return f.event_data(
            self.name,
            f.reference_field(data, "invoice_code", "data.invoice_code"),
            _amount(data),
            self._customer(data),
            currency=_currency((data, "data"), (plan, "data.subscription.plan")),
            reason=reason,
            description=f.text_field(data, "description", "data.description"),
            channel="subscription",
            occurred_at=f.to_datetime(data.get("created_at")),
            next_due_date=_date(subscription.get("next_payment_date")),
        )

    def _transfer(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        recipient = f.object_field(data, "recipient", "data.recipient")
        details = _mapping(recipient, "details")
        account = (
            f.reference_field(details, "account_number", "data.recipient.details.account_number")
            if details.get("account_number")
            else None
        )
        email = f.text_field(recipient, "email", "data.recipient.email")
        if not account and not email:
            raise f.PayloadError("data.recipient has neither details.account_number nor email")
        reason = f.failure_reason(
            data, "data", "gateway_response", "status", default="transfer failed", failed=failed
        )
        return f.event_data(
            self.name,
            f.reference_field(data, "reference", "data.reference"),
            _amount(data),
            Customer(
                account_number=account,
                email=email,
                name=f.text_field(recipient, "name", "data.recipient.name")
                or f.text_field(details, "account_name", "data.recipient.details.account_name"),
            ),
            currency=_currency((data, "data")),
            reason=reason,
            # Paystack's transfer `reason` is the narration given when the transfer was made.
            description=f.text_field(data, "reason", "data.reason"),
            channel="transfer",
            occurred_at=f.to_datetime(data.get("transferred_at") or data.get("updated_at")),
        )

    def _refund(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        original = f.reference_field(data, "transaction_reference", "data.transaction_reference")
        # One transaction may be refunded in parts: each refund is its own event.
        own = next((key for key in ("refund_reference", "id") if data.get(key)), None)
        return f.event_data(
            self.name,
            f.reference_field(data, own, f"data.{own}") if own else original,
            _amount(data),
            self._customer(data),
            currency=_currency((data, "data")),
            reason="refund failed" if failed else None,
            description=f"refund of {original}",
            occurred_at=f.to_datetime(data.get("updated_at") or data.get("created_at")),
        )

    def _subscription(self, data: Mapping[str, Any]) -> EventData:
        plan = _mapping(data, "plan")
        return f.event_data(
            self.name,
            f.reference_field(data, "subscription_code", "data.subscription_code"),
            f.minor_to_decimal(
                data.get("amount") if data.get("amount") is not None else plan.get("amount"),
                "data.amount",
            ),
            self._customer(data),
            currency=_currency((plan, "data.plan"), (data, "data")),
            description=f.text_field(plan, "name", "data.plan.name"),
            channel="subscription",
            occurred_at=f.to_datetime(data.get("createdAt") or data.get("created_at")),
            next_due_date=_date(data.get("next_payment_date")),
        )
