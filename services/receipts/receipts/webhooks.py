"""Siteti outbound webhooks → the audit row to store. Pure: no I/O, so it is unit-tested alone.

What is kept is chosen for privacy: ids, stage and error codes go in; the recipient's phone
number (`data.to`, `data.from`) and a customer's reply text never do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

# Siteti event type → audit stage (bridge.audit.STAGES, plus "conversation").
STAGE_BY_TYPE = {
    "message.sent": "sent",
    "message.delivered": "delivered",
    "message.read": "read",
    "message.failed": "failed",
    "message.received": "replied",
    "conversation.state": "conversation",
}


class WebhookError(ValueError):
    """The body is not a webhook we can store; `status` is the HTTP answer."""

    status = 422


class MalformedBody(WebhookError):
    status = 400


class InvalidWebhook(WebhookError):
    status = 422


class UnknownType(WebhookError):
    """A well-formed event of a type this version does not know (Siteti may add some)."""

    status = 200


@dataclass(frozen=True)
class Receipt:
    event_id: str
    type: str
    stage: str
    reference: str
    occurred_at: datetime
    detail: dict[str, Any]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _timestamp(value: object, received_at: datetime) -> datetime:
    if value is None:
        # Siteti always sends created_at; if it ever does not, the arrival time is the best guess.
        return received_at
    if not isinstance(value, str):
        raise InvalidWebhook("created_at must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidWebhook(f"created_at is not an ISO 8601 time: {value!r}") from exc
    # A time without an offset is taken as UTC, Siteti's zone; comparisons need aware times.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _reference(data: dict[str, Any]) -> str:
    reference = _text(data.get("reference"))
    if reference:
        return reference
    # Conversation events and unsolicited replies carry no reference: file them under the contact.
    contact_id = _text(data.get("contact_id"))
    if contact_id:
        return f"contact:{contact_id}"
    bsuid = _text(data.get("bsuid"))
    if bsuid:
        return f"bsuid:{bsuid}"
    raise InvalidWebhook("data has no reference, contact_id or bsuid to file the event under")


def _detail(event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "message_id": data.get("message_id"),
        "event_id": event_id,
        "type": event_type,
        "contact_id": data.get("contact_id"),
    }
    if event_type in ("message.sent", "message.delivered", "message.read", "message.failed"):
        if isinstance(data.get("status"), str):
            detail["status"] = data["status"]
    if event_type == "message.failed":
        error = data.get("error")
        if isinstance(error, dict):
            detail["error"] = {"code": error.get("code"), "title": error.get("title")}
    elif event_type == "message.received":
        # The reply itself is the customer's business: keep only that one came, and its size.
        text = data.get("text")
        detail["text_length"] = len(text) if isinstance(text, str) else 0
    elif event_type == "conversation.state":
        detail["state"] = data.get("state")
        detail["window_expires_at"] = data.get("window_expires_at")
        if _text(data.get("bsuid")):
            detail["bsuid"] = data["bsuid"]
    return detail


def parse_webhook(
    body: bytes, *, header_event_id: str | None, received_at: datetime | None = None
) -> Receipt:
    """Validate a verified body; raise a WebhookError subclass when it cannot be stored."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedBody("body is not a JSON object")
    missing = [
        name
        for name, ok in (
            ("id", _text(payload.get("id"))),
            ("type", _text(payload.get("type"))),
            ("data", isinstance(payload.get("data"), dict)),
        )
        if not ok
    ]
    if missing:
        raise InvalidWebhook("missing or invalid field(s): " + ", ".join(missing))
    event_type: str = payload["type"]
    data: dict[str, Any] = payload["data"]
    # The header is the delivery's identity (the same on every redelivery); the body id backs it.
    event_id = _text(header_event_id) or payload["id"]
    stage = STAGE_BY_TYPE.get(event_type)
    if stage is None:
        raise UnknownType(f"unknown event type {event_type!r}")
    return Receipt(
        event_id=event_id,
        type=event_type,
        stage=stage,
        reference=_reference(data),
        occurred_at=_timestamp(payload.get("created_at"), received_at or datetime.now(UTC)),
        detail=_detail(event_id, event_type, data),
    )
