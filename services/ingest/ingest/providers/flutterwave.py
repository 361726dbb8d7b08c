"""Flutterwave: `verif-hash` equal to the dashboard's secret hash (v3), or
`flutterwave-signature` = base64 HMAC-SHA256 of the raw body with that hash; either is accepted.

`verif-hash` does not bind the body, so every event is confirmed before it is processed
("verify before process"): `confirm` asks Flutterwave's API about the transaction and refuses
the event unless the answer agrees with the webhook:
- charges: `GET /v3/transactions/{id}/verify`, on status, tx_ref, amount, currency (and the
  customer's email when both give one);
- transfers: `GET /v3/transfers/{id}` ("get a transfer"), on status, amount, currency and the
  destination account number (the customer notified).

The canonical transaction reference is Flutterwave's transaction `id` (what the verify
endpoint takes, unique per attempt, stable across redeliveries); the merchant's `tx_ref`
is kept as the event's `description`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from bridge.config import Settings
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.signing import SignatureError, verify_shared_secret

from . import fields as f
from .base import (
    ConfirmationUnavailable,
    HmacScheme,
    Ignored,
    JsonAdapter,
    Outcome,
    WebhookRequest,
)

#: charge.completed `data.status` -> canonical type (other statuses, e.g. pending, are ignored)
CHARGE_STATUS = {"successful": "payment.successful", "failed": "payment.failed"}
#: transfer.completed `data.status` -> canonical type
TRANSFER_STATUS = {"SUCCESSFUL": "transfer.completed", "FAILED": "transfer.failed"}
#: canonical type -> (the API path that confirms it, the status its answer must give)
CONFIRMATIONS = {
    "payment.successful": ("/v3/transactions/{id}/verify", "successful"),
    "payment.failed": ("/v3/transactions/{id}/verify", "failed"),
    "transfer.completed": ("/v3/transfers/{id}", "successful"),
    "transfer.failed": ("/v3/transfers/{id}", "failed"),
}
#: the v4 signature; `verif-hash` (v3) carries the secret hash itself
SIGNATURE = HmacScheme("flutterwave-signature", encoding="base64")


class Flutterwave(JsonAdapter):
    name = "flutterwave"
    secrets_setting = "flutterwave_secret_hashes"

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        secrets = list(secrets)
        if not secrets:
            raise SignatureError("no secret hash is configured to verify Flutterwave webhooks")
        signature = request.headers.get("flutterwave-signature")
        verif_hash = request.headers.get("verif-hash")
        if not signature and not verif_hash:
            raise SignatureError("missing verif-hash and flutterwave-signature headers")
        problems: list[str] = []
        if signature:
            try:
                SIGNATURE.verify(request, secrets)
                return
            except SignatureError as exc:
                problems.append(str(exc))
        if verif_hash:
            try:
                verify_shared_secret(verif_hash, secrets, header="verif-hash")
                return
            except SignatureError as exc:
                problems.append(str(exc))
        raise SignatureError("; ".join(problems))

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        event_type = f.text_field(payload, "event", "event") or ""
        if event_type not in ("charge.completed", "transfer.completed"):
            return Ignored(f"Flutterwave {event_type!r} is not a notifiable event")
        data = f.object_field(payload, "data", "data")
        status = f.text_field(data, "status", "data.status") or ""
        if event_type == "charge.completed":
            canonical = CHARGE_STATUS.get(status.lower())
            if canonical is None:
                return Ignored(f"Flutterwave charge with status {status!r}")
            event = self._charge(data, failed=canonical == "payment.failed")
        else:
            canonical = TRANSFER_STATUS.get(status.upper())
            if canonical is None:
                return Ignored(f"Flutterwave transfer with status {status!r}")
            event = self._transfer(data, failed=canonical == "transfer.failed")
        return [new_event(event, canonical)]

    def _event(
        self,
        data: Mapping[str, Any],
        customer: Customer,
        *,
        reason: str | None,
        description: str | None,
        channel: str | None,
    ) -> EventData:
        """What charges and transfers share: the `id` is the reference, `created_at` the time."""
        return f.event_data(
            self.name,
            f.reference_field(data, "id", "data.id"),
            f.to_decimal(f.require(data, "amount"), "data.amount"),
            customer,
            currency=f.currency_field(data, "data.currency"),
            reason=reason,
            description=description,
            channel=channel,
            occurred_at=f.to_datetime(data.get("created_at")),
        )

    def _charge(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        return self._event(
            data,
            f.email_customer(f.object_field(data, "customer", "data.customer"), "data.customer"),
            reason=f.failure_reason(
                data, "data", "processor_response", default="payment failed", failed=failed
            ),
            description=f.reference_field(data, "tx_ref", "data.tx_ref"),
            channel=f.text_field(data, "payment_type", "data.payment_type"),
        )

    def _transfer(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        return self._event(
            data,
            Customer(
                account_number=f.reference_field(data, "account_number", "data.account_number"),
                name=f.text_field(data, "fullname", "data.fullname"),
            ),
            reason=f.failure_reason(
                data, "data", "complete_message", default="transfer failed", failed=failed
            ),
            description=f.text_field(data, "narration", "data.narration")
            or f.text_field(data, "reference", "data.reference"),
            channel="transfer",
        )

    async def confirm(
        self, events: list[CanonicalEvent], client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """Ask Flutterwave to confirm every event (charges and transfers)."""
        for event in events:
            path, expected_status = CONFIRMATIONS[event.type]
            answer = await self._fetch(path, event.data.transaction_reference, client, settings)
            _compare(event, answer, expected_status)

    async def _fetch(
        self, path: str, transaction_id: str, client: httpx.AsyncClient, settings: Settings
    ) -> Mapping[str, Any]:
        if not settings.flutterwave_secret_key:
            raise ConfirmationUnavailable(
                "flutterwave_secret_key is not set: transactions cannot be verified"
            )
        base = settings.flutterwave_api_base_url.rstrip("/")
        url = base + path.format(id=quote(transaction_id, safe=""))
        try:
            response = await client.get(
                url, headers={"Authorization": f"Bearer {settings.flutterwave_secret_key}"}
            )
        except httpx.HTTPError as exc:
            raise ConfirmationUnavailable(f"Flutterwave verify call failed: {exc!r}") from exc
        if response.status_code in (401, 403) or response.status_code >= 500:
            raise ConfirmationUnavailable(
                f"Flutterwave verify answered HTTP {response.status_code} for {transaction_id}"
            )
        if response.status_code != 200:
            raise SignatureError(
                f"Flutterwave does not confirm transaction {transaction_id}: "
                f"HTTP {response.status_code} {_message(response)}"
            )
        try:
            answer = response.json()
        except (ValueError, RecursionError) as exc:
            raise ConfirmationUnavailable("Flutterwave verify answered non-JSON") from exc
        if not isinstance(answer, Mapping):
            raise ConfirmationUnavailable("Flutterwave verify answered a non-object")
        return answer


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, Mapping) else ""


def _compare(event: CanonicalEvent, answer: Mapping[str, Any], expected_status: str) -> None:
    """Raise SignatureError unless Flutterwave's verify answer matches the webhook's claims."""
    ref = event.data.transaction_reference
    data = answer.get("data")
    if answer.get("status") != "success" or not isinstance(data, Mapping):
        raise SignatureError(
            f"Flutterwave does not confirm transaction {ref}: {answer.get('message')!r}"
        )
    mismatches: list[str] = []
    if str(data.get("id")) != ref:
        mismatches.append(f"id {data.get('id')!r}")
    if str(data.get("status") or "").lower() != expected_status:
        mismatches.append(f"status {data.get('status')!r} (webhook: {expected_status!r})")
    if event.type.startswith("transfer."):
        # The account the money went to is the customer the message goes to.
        account = event.data.customer.account_number
        if str(data.get("account_number")) != account:
            mismatches.append(
                f"account_number {data.get('account_number')!r} (webhook: {account!r})"
            )
    elif data.get("tx_ref") != event.data.description:
        mismatches.append(f"tx_ref {data.get('tx_ref')!r} (webhook: {event.data.description!r})")
    try:
        amount: Decimal | None = f.to_decimal(data.get("amount"), "amount")
    except f.PayloadError:
        amount = None
    if amount != event.data.amount:
        mismatches.append(f"amount {data.get('amount')!r} (webhook: {event.data.amount})")
    if str(data.get("currency") or "").upper() != event.data.currency:
        mismatches.append(f"currency {data.get('currency')!r} (webhook: {event.data.currency!r})")
    customer = data.get("customer")
    verified_email = customer.get("email") if isinstance(customer, Mapping) else None
    claimed_email = event.data.customer.email
    if (
        isinstance(verified_email, str)
        and verified_email
        and claimed_email
        and verified_email.lower() != claimed_email.lower()
    ):
        mismatches.append("customer email")
    if mismatches:
        raise SignatureError(
            f"Flutterwave's record of transaction {ref} does not match the webhook: "
            + ", ".join(mismatches)
        )
