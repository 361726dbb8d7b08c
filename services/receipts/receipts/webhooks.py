"""Siteti outbound webhooks → the audit row to store. Pure: no I/O, so it is unit-tested alone.

What is kept is chosen for privacy: ids, stage and error codes go in; the recipient's phone
number (`data.to`, `data.from`) and a customer's reply text never do. A reply's and a
conversation change's own facts (`Inbound`) ride along for the replies and conversations topics
(receipts.topics), which seal the number; they are never stored in the audit row.

Whatever the body, the result is a Receipt PostgreSQL can store or a WebhookError (a 4xx):
texts without NUL (which PostgreSQL text and jsonb cannot hold), ids and references short
enough for their indexes, times PostgreSQL and Python can both represent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.inbound import (
    MAX_ID_LENGTH,
    MAX_PAYLOAD_LENGTH,
    MAX_REFERENCE_LENGTH,
    MAX_TEXT_LENGTH,
)

# Siteti event type → audit stage (bridge.audit.STAGES, plus "conversation").
STAGE_BY_TYPE = {
    "message.sent": "sent",
    "message.delivered": "delivered",
    "message.read": "read",
    "message.failed": "failed",
    "message.received": "replied",
    "conversation.state": "conversation",
}


# The types whose facts go to the replies and conversations topics (receipts.topics).
INBOUND_TYPES = frozenset({"message.received", "conversation.state"})


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


# repr=False: a number and a customer's words must not reach a log line through a repr.
@dataclass(frozen=True, repr=False)
class Inbound:
    """What `message.received` and `conversation.state` say beyond the audit detail, cleaned
    for PostgreSQL's jsonb (no NUL) and cut to bridge.inbound's limits."""

    message_id: str | None
    contact_id: str | None
    sender: str | None  # data.from, in clear: receipts.topics seals it
    bsuid: str | None
    text: str | None  # in clear, digits and all: receipts.topics masks numbers in it
    button_payload: str | None
    context_message_id: str | None
    reference: str | None
    state: str | None
    window_expires_at: datetime | None


@dataclass(frozen=True)
class Receipt:
    event_id: str
    type: str
    stage: str
    reference: str
    occurred_at: datetime
    detail: dict[str, Any]
    inbound: Inbound | None = field(default=None, repr=False)


# Ids and references: the limits of the events receipts publishes (bridge.inbound), far beyond
# Siteti's own (evt_ + 24 hex; our references are ~40 characters) and far below PostgreSQL's
# btree limit (2,704 bytes per index row, 4 bytes a character at worst). A reply's text and
# button payload longer than theirs are cut, never refused: a customer's words must not make
# Siteti retry forever.
# A detail value (ids, status, error title) longer than this is cut: it is for people to read.
MAX_DETAIL_CHARS = 500


def storable(text: str, limit: int) -> bool:
    """Whether PostgreSQL can store (and index) `text`: no NUL, valid UTF-8, `limit` at most."""
    if len(text) > limit or "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates: a str no UTF-8 text can hold
        return False
    return True


def _text(value: object, name: str, limit: int = MAX_ID_LENGTH) -> str | None:
    """A non-blank string, None for anything else; InvalidWebhook when it cannot be stored."""
    if not isinstance(value, str) or not value.strip():
        return None
    if not storable(value, limit):
        raise InvalidWebhook(f"{name} is longer than {limit} characters or holds a NUL")
    return value


def _scalar(value: object) -> object:
    """A detail value as stored: text cleaned and cut, numbers and booleans as they are, any
    other JSON (objects, lists) dropped: the audit detail is a flat record, not a copy."""
    if isinstance(value, str):
        return value.replace("\x00", "")[:MAX_DETAIL_CHARS]
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _timestamp(value: object, received_at: datetime) -> datetime:
    if value is None:
        # Siteti always sends created_at; if it ever does not, the arrival time is the best guess.
        return received_at
    if not isinstance(value, str):
        raise InvalidWebhook("created_at must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidWebhook(f"created_at is not an ISO 8601 time: {value[:40]!r}") from exc
    # A time without an offset is taken as UTC, Siteti's zone; comparisons need aware times.
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        # In UTC now, so the database driver never has to (year 1 at +01:00 is year 0 in UTC).
        return parsed.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidWebhook(f"created_at is out of range: {value[:40]!r}") from exc


def _cleaned(value: object, limit: int) -> str | None:
    """Text as the topics can carry it: NUL removed (jsonb cannot hold it), lone surrogates
    replaced (no UTF-8 can), cut to `limit`; None for blank text or anything else."""
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").encode("utf-8", "replace").decode()[:limit]
    return text if text.strip() else None


def _aware(value: object) -> datetime | None:
    """An ISO 8601 time in UTC, or None when `value` is not one (the audit keeps the text)."""
    if not isinstance(value, str):
        return None
    try:
        return _timestamp(value, datetime.now(UTC))
    except InvalidWebhook:
        return None


def _inbound(data: dict[str, Any]) -> Inbound:
    context = data.get("context")
    replied_to = context.get("message_id") if isinstance(context, dict) else None
    return Inbound(
        message_id=_cleaned(data.get("message_id"), MAX_ID_LENGTH),
        contact_id=_cleaned(data.get("contact_id"), MAX_ID_LENGTH),
        sender=_cleaned(data.get("from"), MAX_ID_LENGTH),
        bsuid=_text(data.get("bsuid"), "data.bsuid"),
        text=_cleaned(data.get("text"), MAX_TEXT_LENGTH),
        button_payload=_cleaned(data.get("button_payload"), MAX_PAYLOAD_LENGTH),
        context_message_id=_text(replied_to, "data.context.message_id"),
        reference=_text(data.get("reference"), "data.reference", MAX_REFERENCE_LENGTH),
        state=_cleaned(data.get("state"), MAX_ID_LENGTH),
        window_expires_at=_aware(data.get("window_expires_at")),
    )


def _reference(data: dict[str, Any], event_id: str) -> str:
    reference = _text(data.get("reference"), "data.reference", MAX_REFERENCE_LENGTH)
    if reference:
        return reference
    # Conversation events and unsolicited replies carry no reference: file them under the contact.
    contact_id = _text(data.get("contact_id"), "data.contact_id")
    if contact_id:
        return f"contact:{contact_id}"
    bsuid = _text(data.get("bsuid"), "data.bsuid")
    if bsuid:
        return f"bsuid:{bsuid}"
    if _cleaned(data.get("from"), MAX_ID_LENGTH):
        # A reply from a number that is no contact yet: filed under the event, as the reference
        # may not hold the number.
        return f"siteti:{event_id}"
    raise InvalidWebhook("data has no reference, contact_id or bsuid to file the event under")


def _detail(event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "message_id": _scalar(data.get("message_id")),
        "event_id": event_id,
        "type": event_type,
        "contact_id": _scalar(data.get("contact_id")),
    }
    if event_type in ("message.sent", "message.delivered", "message.read", "message.failed"):
        if isinstance(data.get("status"), str):
            detail["status"] = _scalar(data["status"])
    if event_type == "message.failed":
        error = data.get("error")
        if isinstance(error, dict):
            detail["error"] = {
                "code": _scalar(error.get("code")),
                "title": _scalar(error.get("title")),
            }
    elif event_type == "message.received":
        # The reply itself is the customer's business: keep only that one came, and its size.
        text = data.get("text")
        detail["text_length"] = len(text) if isinstance(text, str) else 0
    elif event_type == "conversation.state":
        detail["state"] = _scalar(data.get("state"))
        detail["window_expires_at"] = _scalar(data.get("window_expires_at"))
        bsuid = _text(data.get("bsuid"), "data.bsuid")
        if bsuid:
            detail["bsuid"] = bsuid
    return detail


def parse_webhook(body: bytes, *, received_at: datetime | None = None) -> Receipt:
    """Validate a verified body; raise a WebhookError subclass when it cannot be stored.

    The event id is the signed body's `id`: the same on every redelivery, and covered by the
    signature. The `X-Siteti-Event-Id` header is not signed, so it never decides what is a
    duplicate (a replayed body with a fresh header would be stored twice; a forged header
    could suppress a real event).
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedBody("body is not a JSON object")
    missing = [
        name
        for name, ok in (
            ("id", _text(payload.get("id"), "id")),
            ("type", _text(payload.get("type"), "type")),
            ("data", isinstance(payload.get("data"), dict)),
        )
        if not ok
    ]
    if missing:
        raise InvalidWebhook("missing or invalid field(s): " + ", ".join(missing))
    event_id: str = payload["id"]
    event_type: str = payload["type"]
    data: dict[str, Any] = payload["data"]
    stage = STAGE_BY_TYPE.get(event_type)
    if stage is None:
        raise UnknownType(f"unknown event type {event_type!r}")
    return Receipt(
        event_id=event_id,
        type=event_type,
        stage=stage,
        reference=_reference(data, event_id),
        occurred_at=_timestamp(payload.get("created_at"), received_at or datetime.now(UTC)),
        detail=_detail(event_id, event_type, data),
        inbound=_inbound(data) if event_type in INBOUND_TYPES else None,
    )
