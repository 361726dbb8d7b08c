"""A generic payment platform with a configurable signature scheme.

Default: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature:
v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`, `whsec_` secrets, 5-minute tolerance).
Alternative: one header carrying an HMAC of the raw body (SHA-256 or -512, hex or base64,
optional prefix such as `sha256=`). The scheme comes from `GENERIC_SIGNATURE_*` settings.

Envelope `{"event": "payment.success", "data": {"transaction_id", "amount", "currency",
"status", "customer": {"email", "name"}}}`; the customer is found by email.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from bridge.config import Settings, get_settings
from bridge.events import new_event
from bridge.signing import Algorithm, Encoding, standard_webhooks_key, verify_standard_webhook

from . import fields as f
from .base import HmacScheme, Ignored, JsonAdapter, Outcome, WebhookRequest, open_envelope

Scheme = Literal["standard-webhooks", "hmac"]
SCHEMES: tuple[Scheme, ...] = ("standard-webhooks", "hmac")
ALGORITHMS: tuple[Algorithm, ...] = ("sha256", "sha512")
ENCODINGS: tuple[Encoding, ...] = ("hex", "base64")

#: the platform's event -> canonical type
EVENT_MAP = {
    "payment.success": "payment.successful",
    "payment.failed": "payment.failed",
    "refund.processed": "refund.processed",
    "transfer.success": "transfer.completed",
    "transfer.failed": "transfer.failed",
    "subscription.renew": "subscription.renewed",
}


def _choice(value: str, allowed: tuple[str, ...], setting: str) -> str:
    normalised = value.strip().lower()
    if normalised not in allowed:
        raise ValueError(f"{setting} must be one of {', '.join(allowed)}; got {value!r}")
    return normalised


@dataclass(frozen=True)
class SignatureScheme:
    """How the generic source signs. Invalid values raise ValueError at construction."""

    scheme: Scheme = "standard-webhooks"
    header: str = "x-signature"
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""
    tolerance_seconds: int = 300

    def __post_init__(self) -> None:
        for value, allowed, setting in (
            (self.scheme, SCHEMES, "generic_signature_scheme"),
            (self.algorithm, ALGORITHMS, "generic_signature_algorithm"),
            (self.encoding, ENCODINGS, "generic_signature_encoding"),
        ):
            if value not in allowed:
                raise ValueError(f"{setting} must be one of {', '.join(allowed)}; got {value!r}")
        if self.scheme == "hmac" and not self.header.strip():
            raise ValueError("generic_signature_header must name a header")
        if self.tolerance_seconds <= 0:
            raise ValueError("generic_timestamp_tolerance_seconds must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> SignatureScheme:
        return cls(
            scheme=cast(
                Scheme,
                _choice(settings.generic_signature_scheme, SCHEMES, "generic_signature_scheme"),
            ),
            header=settings.generic_signature_header.strip(),
            algorithm=cast(
                Algorithm,
                _choice(
                    settings.generic_signature_algorithm, ALGORITHMS, "generic_signature_algorithm"
                ),
            ),
            encoding=cast(
                Encoding,
                _choice(
                    settings.generic_signature_encoding, ENCODINGS, "generic_signature_encoding"
                ),
            ),
            prefix=settings.generic_signature_prefix,
            tolerance_seconds=settings.generic_timestamp_tolerance_seconds,
        )

    @property
    def hmac(self) -> HmacScheme:
        """The "hmac" scheme's declaration, as the HMAC providers make theirs."""
        return HmacScheme(self.header, self.algorithm, self.encoding, self.prefix)


class Generic(JsonAdapter):
    name = "generic"
    secrets_setting = "generic_webhook_secrets"

    def __init__(self, scheme: SignatureScheme | None = None) -> None:
        """`scheme=None` reads it from `get_settings()` on first use."""
        self._scheme = scheme

    @property
    def scheme(self) -> SignatureScheme:
        if self._scheme is None:
            self._scheme = SignatureScheme.from_settings(get_settings())
        return self._scheme

    def check_configuration(self, secrets: Sequence[str]) -> None:
        if self.scheme.scheme == "standard-webhooks":
            for secret in secrets:
                try:
                    standard_webhooks_key(secret)
                except ValueError as exc:
                    raise ValueError(
                        "GENERIC_WEBHOOK_SECRETS: a Standard Webhooks secret is whsec_ followed"
                        " by base64 (with its '=' padding)"
                    ) from exc

    def verify(self, request: WebhookRequest, secrets: Sequence[str]) -> None:
        scheme = self.scheme
        if scheme.scheme == "standard-webhooks":
            verify_standard_webhook(
                request.headers,
                request.body,
                secrets,
                now=request.now,
                tolerance=scheme.tolerance_seconds,
            )
            return
        scheme.hmac.verify(request, secrets)

    def parse_payload(self, payload: Mapping[str, Any]) -> Outcome:
        envelope = open_envelope(payload, EVENT_MAP, "generic event")
        if isinstance(envelope, Ignored):
            return envelope
        canonical, data = envelope.canonical, envelope.data
        event = f.event_data(
            self.name,
            f.reference_field(data, "transaction_id", "data.transaction_id"),
            f.to_decimal(f.require(data, "amount"), "data.amount"),
            f.email_customer(f.object_field(data, "customer", "data.customer"), "data.customer"),
            currency=f.currency_field(data, "data.currency"),
            reason=f.failure_reason(
                data,
                "data",
                "reason",
                "failure_reason",
                default=canonical.replace(".", " "),
                failed=canonical.endswith(".failed"),
            ),
            description=f.text_field(data, "description", "data.description"),
            channel=f.text_field(data, "channel", "data.channel"),
            occurred_at=f.to_datetime(data.get("created_at") or payload.get("timestamp")),
            next_due_date=f.text_field(data, "next_due_date", "data.next_due_date")
            or f.text_field(data, "next_billing_date", "data.next_billing_date"),
        )
        return [new_event(event, canonical)]
