"""The receipts API's OpenAPI description: Siteti's webhook request (read raw, so described
here), the answers' models, and every error status as problem details (bridge.problems)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bridge.problems import openapi_responses

from .webhooks import STAGE_BY_TYPE

# The webhook endpoint reads its raw body itself (the signature covers the exact bytes), so
# its request is described here: Siteti's webhook contract, for readers and for fuzzing.
WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Siteti-Signature",
            "in": "header",
            "required": True,
            "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>'>[,v1=…]",
            "schema": {"type": "string"},
        },
        {
            "name": "X-Siteti-Event-Id",
            "in": "header",
            "required": False,
            "description": "Accepted but not trusted: duplicates are told apart by the body's id",
            "schema": {"type": "string"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["id", "type", "data"],
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string", "enum": sorted(STAGE_BY_TYPE)},
                        "created_at": {"type": "string", "format": "date-time"},
                        "data": {
                            "type": "object",
                            "properties": {
                                name: {"type": "string"}
                                for name in (
                                    "reference",
                                    "message_id",
                                    "contact_id",
                                    "bsuid",
                                    "status",
                                    "state",
                                    "window_expires_at",
                                    "text",
                                    "to",
                                    "from",
                                )
                            }
                            | {
                                "error": {
                                    "type": "object",
                                    "properties": {
                                        "code": {"type": "integer"},
                                        "title": {"type": "string"},
                                    },
                                }
                            },
                        },
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}


class WebhookAnswer(BaseModel):
    status: Literal["stored", "duplicate", "ignored"] = Field(
        description="ignored: a type this version does not use (acknowledged, not stored)"
    )


class AuditEvent(BaseModel):
    stage: str
    source: str
    occurred_at: str = Field(description="ISO 8601")
    recorded_at: str = Field(description="ISO 8601")
    detail: Any = Field(description="what the stage recorded (masked, no clear numbers)")


class AuditTrail(BaseModel):
    reference: str
    status: str = Field(description="the transaction's state, from its furthest stage")
    events: list[AuditEvent]


class StageCount(BaseModel):
    events: int
    transactions: int


class AuditStats(BaseModel):
    window_hours: int
    since: str = Field(description="ISO 8601: the window's start")
    events: int
    stages: dict[str, StageCount]


_READ_ERRORS = {
    401: "missing or unknown bearer token",
    403: "the token's role may not read this",
    422: "a query or path parameter is invalid",
    503: "no token configured (the API is off), or storage unavailable",
}
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "stored, duplicate, or ignored", "model": WebhookAnswer},
    **openapi_responses(
        {
            400: "not a JSON object",
            401: "missing, stale or wrong signature",
            413: "body over MAX_BODY_BYTES",
            422: "authentic but unusable (missing or invalid fields)",
            503: "storage unavailable: Siteti retries",
        }
    ),
}
STATS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "counts by stage in the window", "model": AuditStats},
    **openapi_responses(_READ_ERRORS),
}
TRAIL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the reference's audit trail, oldest first", "model": AuditTrail},
    **openapi_responses({**_READ_ERRORS, 404: "no audit record for that reference"}),
}
