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
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from bridge.config import Settings
from bridge.events import CanonicalEvent, Customer, EventData, new_event
from bridge.signing import SignatureError, verify_hmac, verify_shared_secret

from .base import (
    ConfirmationUnavailable,
    Ignored,
    Outcome,
    PayloadError,
    WebhookRequest,
    currency_field,
    json_object,
    object_field,
    payload_fields,
    reference_field,
    require,
    required_text,
    text_field,
    to_datetime,
    to_decimal,
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


class Flutterwave:
    name: ClassVar[str] = "flutterwave"
    secrets_setting: ClassVar[str] = "flutterwave_secret_hashes"
    bad_signature_status: ClassVar[int] = 401

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
                verify_hmac(
                    request.body,
                    signature,
                    secrets,
                    encoding="base64",
                    header="flutterwave-signature",
                )
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

    def parse(self, request: WebhookRequest) -> Outcome:
        payload = json_object(request)
        with payload_fields():
            return self._parse(payload)

    def _parse(self, payload: Mapping[str, Any]) -> Outcome:
        event_type = text_field(payload, "event", "event") or ""
        if event_type not in ("charge.completed", "transfer.completed"):
            return Ignored(f"Flutterwave {event_type!r} is not a notifiable event")
        data = object_field(payload, "data", "data")
        status = text_field(data, "status", "data.status") or ""
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

    def _charge(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        customer = object_field(data, "customer", "data.customer")
        reason = None
        if failed:
            reason = (
                text_field(data, "processor_response", "data.processor_response")
                or "payment failed"
            )
        return EventData(
            provider=self.name,
            transaction_reference=reference_field(data, "id", "data.id"),
            amount=to_decimal(require(data, "amount"), "data.amount"),
            currency=currency_field(data, "data.currency"),
            customer=Customer(
                email=required_text(customer, "email", "data.customer.email"),
                name=text_field(customer, "name", "data.customer.name"),
            ),
            reason=reason,
            description=reference_field(data, "tx_ref", "data.tx_ref"),
            channel=text_field(data, "payment_type", "data.payment_type"),
            occurred_at=to_datetime(data.get("created_at")),
        )

    def _transfer(self, data: Mapping[str, Any], *, failed: bool) -> EventData:
        reason = None
        if failed:
            reason = (
                text_field(data, "complete_message", "data.complete_message") or "transfer failed"
            )
        return EventData(
            provider=self.name,
            transaction_reference=reference_field(data, "id", "data.id"),
            amount=to_decimal(require(data, "amount"), "data.amount"),
            currency=currency_field(data, "data.currency"),
            customer=Customer(
                account_number=reference_field(data, "account_number", "data.account_number"),
                name=text_field(data, "fullname", "data.fullname"),
            ),
            reason=reason,
            description=text_field(data, "narration", "data.narration")
            or text_field(data, "reference", "data.reference"),
            channel="transfer",
            occurred_at=to_datetime(data.get("created_at")),
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
        amount: Decimal | None = to_decimal(data.get("amount"), "amount")
    except PayloadError:
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
