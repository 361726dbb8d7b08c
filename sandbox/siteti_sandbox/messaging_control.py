"""`/_sandbox/` controls for the customer side: replies, auto-replies, Meta delivery failures
and conversation-state webhooks. Bodies are checked by pydantic (FastAPI answers 422 with
the offending field); every webhook goes through the signed, retried WebhookSender."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from fastapi import APIRouter
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .api import valid_phone
from .messaging import DEFAULT_AUTO_REPLY_DELAY_SECONDS, AutoReply, reply_data
from .state import SESSION_WINDOW_SECONDS, SandboxState, iso
from .webhooks import WebhookSender

MAX_TEXT_CHARS = 4096  # WhatsApp's limit on a text message
MAX_DELAY_SECONDS = 3600.0


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value


def _phone(value: str) -> str:
    if not valid_phone(value):
        raise ValueError("must be an international phone number, digits only, without +")
    return value


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS), AfterValidator(_non_blank)]
Name = Annotated[str, Field(max_length=256), AfterValidator(_non_blank)]
Phone = Annotated[str, AfterValidator(_phone)]
Delay = Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS)]


class _Answer(BaseModel):
    """What a customer sends: a text, a quick-reply button's payload, or both."""

    model_config = ConfigDict(extra="forbid")

    text: Text | None = None
    button_payload: Name | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.text is None and self.button_payload is None:
            raise ValueError("give text, button_payload or both")
        return self


class ReplyBody(_Answer):
    sender: Phone | None = Field(default=None, alias="from")
    context_message_id: Name | None = None
    bsuid: Name | None = None
    delay_seconds: Delay = 0.0

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if self.sender is None and self.bsuid is None and self.context_message_id is None:
            raise ValueError("give from, bsuid or context_message_id (whose recipient replies)")
        return self


class AutoReplyBody(_Answer):
    delay_seconds: Delay = DEFAULT_AUTO_REPLY_DELAY_SECONDS
    numbers: Annotated[list[Phone], Field(min_length=1)] | None = None


class DeliveryFailureBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: int = Field(strict=True, ge=0)  # Meta's error code; "131026" (a string) is refused
    title: Name | None = None  # default: Meta's title for the code
    to: Phone | None = None
    template_id: Name | None = None
    times: int | None = Field(default=None, strict=True, ge=1)


class ConversationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: Name | None = None
    sender: Phone | None = Field(default=None, alias="from")
    state: Literal["open", "closed"]
    window_expires_at: AwareDatetime | None = None  # default when open: 24 h from now
    bsuid: Name | None = None

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if self.contact_id is None and self.sender is None and self.bsuid is None:
            raise ValueError("give contact_id, from or bsuid")
        return self


def _emitted(event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event_id, "data": data}


def messaging_router(state: SandboxState, sender: WebhookSender) -> APIRouter:
    router = APIRouter(prefix="/_sandbox", tags=["sandbox control: customer side"])

    def contact_of(phone: str | None) -> str | None:
        return state.contacts_by_phone.get(phone) if phone else None

    def remember_bsuid(contact_id: str | None, bsuid: str | None) -> None:
        # What GET /conversations/{contact_id} then answers as the contact's bsuid.
        if contact_id and bsuid:
            state.bsuids[contact_id] = bsuid

    @router.post("/replies")
    async def reply(body: ReplyBody) -> dict[str, Any]:
        """The customer writes (message.received). Replying to a known message copies its
        reference, and by default its recipient is the one who replies."""
        replied_to = state.message(body.context_message_id) if body.context_message_id else None
        phone = body.sender or (replied_to.to if replied_to else None)
        contact_id = contact_of(phone)
        if contact_id is None and replied_to is not None and replied_to.to == phone:
            contact_id = replied_to.contact_id  # the contact the message was sent under
        remember_bsuid(contact_id, body.bsuid)
        data = reply_data(
            sender=phone,
            contact_id=contact_id,
            text=body.text,
            button_payload=body.button_payload,
            context_message_id=body.context_message_id,
            reference=replied_to.reference if replied_to else None,
            bsuid=body.bsuid,
        )
        return _emitted(sender.schedule_reply(data, body.delay_seconds), data)

    @router.get("/auto-replies")
    async def auto_replies() -> list[dict[str, Any]]:
        return [rule.public() for rule in state.messaging.auto_replies.values()]

    @router.put("/auto-replies/{template_id}")
    async def put_auto_reply(template_id: str, body: AutoReplyBody) -> dict[str, Any]:
        """From now on, every recipient (or those in `numbers`) of this template replies."""
        rule = AutoReply(
            template_id, body.text, body.button_payload, body.delay_seconds, body.numbers
        )
        state.messaging.auto_replies[template_id] = rule
        return rule.public()

    @router.delete("/auto-replies")
    async def clear_auto_replies() -> dict[str, int]:
        cleared = len(state.messaging.auto_replies)
        state.messaging.auto_replies.clear()
        return {"cleared": cleared}

    @router.get("/delivery-failures")
    async def delivery_failures() -> list[dict[str, Any]]:
        return [rule.public() for rule in state.messaging.failures]

    @router.post("/delivery-failures")
    async def add_delivery_failure(body: DeliveryFailureBody) -> dict[str, Any]:
        """Matching messages accepted from now on get message.sent then message.failed."""
        rule = state.messaging.add_failure(
            body.code, body.title, body.to, body.template_id, body.times
        )
        return rule.public()

    @router.delete("/delivery-failures")
    async def clear_delivery_failures() -> dict[str, int]:
        cleared = len(state.messaging.failures)
        state.messaging.failures.clear()
        return {"cleared": cleared}

    @router.post("/conversations")
    async def conversation(body: ConversationBody) -> dict[str, Any]:
        """Emit conversation.state, and open or close the sandbox's own service window to
        match (what POST /messages and GET /conversations then see)."""
        contact = state.contacts.get(body.contact_id or "")
        phone = body.sender or (contact.phone if contact else None)
        contact_id = body.contact_id or contact_of(phone)
        expires = body.window_expires_at.timestamp() if body.window_expires_at else None
        keys = [k for k in (contact_id, phone) if k]
        remember_bsuid(contact_id, body.bsuid)
        if body.state == "open":
            if expires is None:
                expires = state.now() + SESSION_WINDOW_SECONDS
            for key in keys:
                state.sessions[key] = expires - SESSION_WINDOW_SECONDS  # when it opened
        else:
            for key in keys:
                state.sessions.pop(key, None)
        data = {
            "contact_id": contact_id,
            "from": phone,
            "state": body.state,
            "window_expires_at": iso(expires) if expires is not None else None,
            "bsuid": body.bsuid,
        }
        return _emitted(sender.emit("conversation.state", data, 0), data)

    return router
