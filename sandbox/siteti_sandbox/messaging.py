"""What the customer side of WhatsApp does in the sandbox: replies (on demand or automatically
after a template) and Meta delivery failures injected per recipient or template.

Pure state and payload builders, no I/O: the webhook sender turns them into signed webhooks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

# Meta's titles for the codes the bridge acts on, used when a rule gives none.
DEFAULT_FAILURE_TITLES: dict[int, str] = {
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "Meta chose not to deliver",
    130429: "Rate limit hit",
    131056: "Pair rate limit hit",
}
DEFAULT_AUTO_REPLY_DELAY_SECONDS = 0.2


@dataclass
class DeliveryFailure:
    id: str
    code: int
    title: str
    to: str | None  # None: any recipient
    template_id: str | None  # None: any template (and free-form messages)
    remaining: int | None  # None: every matching message

    def matches(self, to: str, template_id: str | None) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return (self.to is None or self.to == to) and (
            self.template_id is None or self.template_id == template_id
        )

    def error(self) -> dict[str, Any]:
        return {"code": self.code, "title": self.title}

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class AutoReply:
    template_id: str
    text: str | None
    button_payload: str | None
    delay_seconds: float
    numbers: list[str] | None  # None: every recipient

    def applies_to(self, to: str) -> bool:
        return self.numbers is None or to in self.numbers

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MessagingControls:
    def __init__(self) -> None:
        self.failures: list[DeliveryFailure] = []
        self.auto_replies: dict[str, AutoReply] = {}  # by template id
        self._seq = 0

    def add_failure(
        self,
        code: int,
        title: str | None,
        to: str | None,
        template_id: str | None,
        times: int | None,
    ) -> DeliveryFailure:
        self._seq += 1
        rule = DeliveryFailure(
            id=f"dlf_{self._seq}",
            code=code,
            title=title or DEFAULT_FAILURE_TITLES.get(code, "Message failed"),
            to=to,
            template_id=template_id,
            remaining=times,
        )
        self.failures.append(rule)
        return rule

    def failure_for(self, to: str, template_id: str | None) -> DeliveryFailure | None:
        """The first rule matching this accepted message; consumes one of its `times`."""
        rule = next((r for r in self.failures if r.matches(to, template_id)), None)
        if rule is not None and rule.remaining is not None:
            rule.remaining -= 1
        return rule

    def auto_reply_for(self, template_id: str | None, to: str) -> AutoReply | None:
        rule = self.auto_replies.get(template_id or "")
        return rule if rule is not None and rule.applies_to(to) else None

    def clear(self) -> None:
        self.failures.clear()
        self.auto_replies.clear()


def new_inbound_message_id() -> str:
    return "msg_in_" + secrets.token_hex(12)


def reply_data(
    *,
    sender: str | None,
    contact_id: str | None,
    text: str | None,
    button_payload: str | None,
    context_message_id: str | None,
    reference: str | None,
    bsuid: str | None,
) -> dict[str, Any]:
    """`data` of a `message.received` webhook."""
    return {
        "message_id": new_inbound_message_id(),
        "contact_id": contact_id,
        "from": sender,
        "text": text,
        "button_payload": button_payload,
        "context": {"message_id": context_message_id} if context_message_id else None,
        "reference": reference,
        "bsuid": bsuid,
    }
