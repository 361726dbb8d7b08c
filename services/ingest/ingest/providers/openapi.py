"""The OpenAPI description of `POST /webhooks/{provider}` (FastAPI `openapi_extra`).

The endpoint reads the raw body itself (signatures are over the exact bytes), so FastAPI
cannot infer the request from the handler: this says what a caller may send (the provider's
own JSON, or any bytes), the signature headers the providers use, and (`WEBHOOK_RESPONSES`)
every status the edge answers, errors as problem details.
It makes the OpenAPI document true, and lets schema-driven fuzzing (schemathesis) send
bodies and signature headers at all.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bridge.problems import openapi_responses

#: the headers that carry a signature or its timestamp, across the providers
SIGNATURE_HEADERS = (
    "x-moniepoint-signature",
    "monnify-signature",
    "x-paystack-signature",
    "verif-hash",
    "flutterwave-signature",
    "opm-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)

#: the statuses `POST /webhooks/{provider}` answers with a problem (bridge.problems)
ERROR_STATUSES = {
    400: "Malformed JSON, or (Open Market) a bad or missing signature",
    401: "Bad, missing or stale signature; or the provider does not confirm the transaction",
    403: "The client address is not allowed for this provider",
    404: "Unknown provider",
    413: "The body is larger than MAX_BODY_BYTES",
    422: "Authentic, but not something the bridge can turn into an event (the field is named)",
    429: "Too many rejected requests from this client (`retry_after`)",
    503: "Kafka (or the provider's confirmation API) is unavailable, or too many requests"
    " are in progress: retry later",
}


class AcceptedEvent(BaseModel):
    id: str = Field(description="the canonical event's id (CloudEvents `id`)")
    type: str = Field(description="the canonical event type, e.g. payment.succeeded")
    subject: str | None = Field(description="the transaction reference")


class Accepted(BaseModel):
    """The events are durably on Kafka."""

    status: Literal["accepted"]
    events: list[AcceptedEvent]


class IgnoredAnswer(BaseModel):
    """Authentic and understood, deliberately not an event."""

    status: Literal["ignored"]
    reason: str


#: FastAPI `responses=`: 200 is an Accepted, an IgnoredAnswer or a provider's handshake
#: answer (an object the provider defines); every error a problem.
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Accepted (events durably on Kafka), ignored, or a provider's handshake",
        "model": Accepted | IgnoredAnswer | dict[str, Any],
    },
    **openapi_responses(ERROR_STATUSES),
}


def webhook_openapi() -> dict[str, Any]:
    return {
        "parameters": [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
            for name in SIGNATURE_HEADERS
        ],
        "requestBody": {
            "required": True,
            "description": "The provider's own webhook JSON, exactly as it signed it (the"
            " signature covers the raw bytes, so the bridge reads them itself): Moniepoint,"
            " Monnify, Paystack, Flutterwave, Open Market, WasaaPay, or a Standard Webhooks"
            " sender (`generic`). docs/events.md maps each to the canonical events.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    }
