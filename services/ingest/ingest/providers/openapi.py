"""The OpenAPI description of `POST /webhooks/{provider}` (FastAPI `openapi_extra`).

The endpoint reads the raw body itself (signatures are over the exact bytes), so FastAPI
cannot infer the request from the handler: this says what a caller may send (any JSON, or
any bytes), the signature headers the providers use, and every status the edge answers.
It makes the OpenAPI document true, and lets schema-driven fuzzing (schemathesis) send
bodies and signature headers at all.
"""

from __future__ import annotations

from typing import Any

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

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
_STATUSES = {
    "400": "Malformed JSON, or (Open Market) a bad or missing signature",
    "401": "Bad, missing or stale signature; or the provider does not confirm the transaction",
    "403": "The client address is not allowed for this provider",
    "404": "Unknown provider",
    "413": "The body is larger than MAX_BODY_BYTES",
    "422": "Authentic, but not something the bridge can turn into an event (the field is named)",
    "429": "Too many rejected requests from this client",
    "503": "Kafka (or the provider's confirmation API) is unavailable: retry later",
}


def webhook_openapi() -> dict[str, Any]:
    return {
        "parameters": [
            {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
            for name in SIGNATURE_HEADERS
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "responses": {
            "200": {
                "description": "Accepted (events durably on Kafka), a handshake, or ignored",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{
                status: {
                    "description": text,
                    "content": {"application/json": {"schema": _ERROR}},
                }
                for status, text in _STATUSES.items()
            },
        },
    }
